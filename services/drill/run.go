package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/google/uuid"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure a drill run.
type Options struct {
	JS     jetstream.JetStream
	Config *config.Config
	File   *File
	// DNS are the DNS servers (host:port) whose answers are measured.
	DNS []string
	// By names who runs the drill (user@host).
	By string
	// Hold is how long the last step's failures stay in force before the runner rolls back.
	Hold time.Duration
	// Lease is how long the drill survives its runner: without a renewal for Lease, a controller
	// rolls it back. Default 3s; the runner renews every third of it, deleting each renewal
	// from DRILLS once the next is stored.
	Lease time.Duration
	// Wait bounds how long the run waits for the cluster: for the reads of its start, for its
	// claims and start together, and for each of its events after (the CLI's --timeout). At
	// most, and by default, 15 s (storeWithin).
	Wait time.Duration
	Log  zerolog.Logger
	// Started, when set, receives the drill's id once its start is recorded.
	Started func(id string)
}

// ErrRefused wraps the safety rules a drill breaks.
var ErrRefused = errors.New("drill refused")

// pollEvery is how often the runner asks the DNS servers and ROUTES while it waits for a switch.
const pollEvery = 20 * time.Millisecond

// Run plans the drill, refuses it if a safety rule forbids it, then records its start and steps
// on DRILLS, measures after each step how long the DNS servers and the edges' route tables took
// to switch, rolls back (after Hold), waits for the answers to return, and records the scorecard.
// Cancelling ctx rolls the drill back ("requested") before returning.
func Run(ctx context.Context, o Options) (Scorecard, error) {
	if o.Lease <= 0 {
		o.Lease = 3 * time.Second
	}
	if o.Wait <= 0 || o.Wait > storeWithin {
		o.Wait = storeWithin
	}
	read, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	v, votes, err := ReadState(read, o.JS, o.Config)
	if err != nil {
		return Scorecard{}, events.Unanswered(o.Wait, err)
	}
	active, err := ReadDrills(read, o.JS)
	if err != nil {
		return Scorecard{}, events.Unanswered(o.Wait, err)
	}
	plan, err := MakePlan(o.File, o.Config, v, votes, active)
	if err != nil {
		return Scorecard{}, err
	}
	if len(plan.Refused) > 0 {
		return Scorecard{}, fmt.Errorf("%w:\n%s", ErrRefused, strings.Join(plan.Refused, "\n"))
	}
	if err := awaitBaseline(ctx, o, plan.Before); err != nil {
		return Scorecard{}, err
	}
	begin, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	drills, err := o.JS.Stream(begin, events.StreamDrills)
	if err != nil {
		return Scorecard{}, events.Unanswered(o.Wait, fmt.Errorf("run drill: open stream %s: %w", events.StreamDrills, err))
	}
	id := o.File.Name + "-" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String()[:18], "-", "")
	subject := events.DrillSubject(id)
	claims, err := claimApps(begin, o.JS, events.DrillClaim{ID: id, Name: o.File.Name, By: o.By, Until: time.Now().Add(o.Lease)}, plan.Apps)
	if err != nil {
		return Scorecard{}, events.Unanswered(o.Wait, err)
	}
	start := time.Now()
	sc := Scorecard{Drill: id, Name: o.File.Name, By: o.By, Started: start, Pass: true}
	started, err := publish(begin, o.JS, subject, events.TypeDrillStarted, o.By, events.DrillStarted{ID: id, Name: o.File.Name, By: o.By,
		Apps: plan.Apps, Steps: len(plan.Steps), RollbackAt: start.Add(o.File.MaxDuration.D()), LeaseMS: o.Lease.Milliseconds()}, o.Wait)
	if err != nil {
		releaseClaims(context.WithoutCancel(ctx), o.JS, o.By, claims)
		return Scorecard{}, events.Unanswered(o.Wait, fmt.Errorf("drill %s not run: its start was not recorded, or its answer was lost (a controller then rolls it back once its lease of %s has run out): %w", id, o.Lease, err))
	}
	rec := record{id: id, wait: o.Wait, done: []string{"the drill's start"}}
	rb := &rollbackWatch{drills: drills, subject: subject, next: started.Sequence}
	if o.Started != nil {
		o.Started(id)
	}
	log := o.Log.With().Str("component", "drill").Str("drill", id).Logger()
	log.Info().Int("steps", len(plan.Steps)).Msg("drill started")
	renewCtx, stopRenew := context.WithCancel(ctx)
	renewed := make(chan struct{})
	// warned is set once a renewal could not be deleted: it is said once a run.
	warned := false
	go func() {
		defer close(renewed)
		t := time.NewTicker(o.Lease / 3)
		defer t.Stop()
		// prev is the sequence of the last renewal stored, deleted once the next one is:
		// DRILLS keeps a drill's last renewal only, and every other event of it.
		var prev uint64
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				ack, err := publish(renewCtx, o.JS, subject, events.TypeDrillRenewed, o.By, events.DrillRenewed{By: o.By}, o.Lease/3)
				if err != nil {
					if renewCtx.Err() == nil {
						log.Warn().Err(err).Msg("drill lease not renewed")
					}
					continue
				}
				if prev != 0 && prev != ack.Sequence {
					dctx, cancel := context.WithTimeout(renewCtx, rollbackCheck)
					err := drills.DeleteMsg(dctx, prev)
					cancel()
					if err != nil && !warned && renewCtx.Err() == nil {
						log.Warn().Err(err).Uint64("stream_seq", prev).Msg("drill renewal not deleted: DRILLS keeps it")
						warned = true
					}
				}
				prev = ack.Sequence
			}
		}
	}()
	prev := plan.Before
	reason := "completed"
	for _, sp := range plan.Steps {
		t0 := time.Now()
		if _, err := publish(ctx, o.JS, subject, events.TypeDrillStepStarted, o.By, events.DrillStep{Index: sp.Index, Step: sp.Step, Failures: sp.Failures}, o.Wait); err != nil {
			reason = "requested"
			if ctx.Err() == nil {
				rec.failed(err, fmt.Sprintf("step %d (%s)", sp.Index+1, sp.Step))
			}
			break
		}
		rec.done = append(rec.done, fmt.Sprintf("step %d (%s)", sp.Index+1, sp.Step))
		score := measure(ctx, o, rb, prev, sp, t0)
		sc.Steps = append(sc.Steps, score)
		sc.Pass = sc.Pass && score.Pass
		log.Info().Str("step", sp.Step).Bool("pass", score.Pass).Str("reason", score.Reason).Msg("drill step scored")
		prev = sp
		if ctx.Err() != nil || score.RolledBack != "" {
			reason = "requested"
			break
		}
	}
	// Hold the last step, unless the drill is rolled back meanwhile (an operator, or a controller at
	// max_duration), or a step went unrecorded, which ends it.
	for end := time.Now().Add(o.Hold); rec.err == nil && ctx.Err() == nil && time.Now().Before(end); {
		if found, _ := rb.check(ctx); found != "" {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(100*time.Millisecond, time.Until(end))):
		}
	}
	stopRenew()
	<-renewed
	// The rollback is recorded even when ctx ended: a cancelled runner still lifts its failures.
	// Each request to the cluster from here waits o.Wait, and the return is measured until its
	// rto's deadline (measure): a 10 s bound on them all cut a slower return short, failed it,
	// and left the scorecard no time to be stored. Once ctx ends, what follows the rollback has
	// 10 s (tail).
	rctx := context.WithoutCancel(ctx)
	tail, endTail := context.WithCancel(rctx)
	defer endTail()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(10*time.Second, endTail) })()
	if ctx.Err() != nil {
		reason = "requested"
	}
	// The return is timed from the rollback: from this runner's, or from the moment it found a
	// controller's.
	rollbackAt := time.Now()
	sc.RolledBack, _ = rb.check(rctx)
	if sc.RolledBack == "" {
		if _, err := publish(rctx, o.JS, subject, events.TypeDrillRolledBack, o.By, events.DrillRolledBack{By: o.By, Reason: reason}, o.Wait); err != nil {
			rec.failed(err, fmt.Sprintf("the rollback (a controller rolls the drill back once DRILLS answers, its lease of %s having run out)", o.Lease))
			return sc, rec.error()
		}
		sc.RolledBack = reason + " by " + o.By
	}
	rec.done = append(rec.done, "the rollback")
	wait, cancel := context.WithTimeout(tail, o.Wait)
	releaseClaims(wait, o.JS, o.By, claims)
	cancel()
	back := StepPlan{Index: len(plan.Steps), Step: "rollback", RTO: o.File.Steps[0].RTO.D(), Answers: plan.Before.Answers, Routes: plan.Before.Routes}
	restore := measure(tail, o, nil, prev, back, rollbackAt)
	sc.Restored = restore
	sc.Ended = time.Now()
	if _, err := publish(tail, o.JS, subject, events.TypeDrillScored, o.By, sc, o.Wait); err != nil {
		rec.failed(err, "the scorecard")
		return sc, rec.error()
	}
	wait, cancel = context.WithTimeout(tail, o.Wait)
	keepLastRenewal(wait, drills, subject, started.Sequence, log, &warned)
	cancel()
	log.Info().Bool("pass", sc.Pass).Msg("drill scored")
	if rec.err != nil {
		return sc, rec.error()
	}
	return sc, nil
}

// record is what of drill id the cluster recorded, for the error of a run it stopped answering:
// each of the run's requests waits for it up to wait.
type record struct {
	id   string
	wait time.Duration
	done []string
	// missed were refused at each attempt; unsure went unanswered at one at least, and the
	// cluster may have stored them (a publish the dying leader stored, its answer lost): a step
	// among them may be in force.
	missed, unsure []string
	err            error // the first failure
}

// failed notes that the event what was not stored, as far as the run knows, failing with err.
func (r *record) failed(err error, what string) {
	if r.err == nil {
		r.err = err
	}
	if errors.As(err, new(*maybeStored)) {
		r.unsure = append(r.unsure, what)
	} else {
		r.missed = append(r.missed, what)
	}
}

// error is the error of a run whose events failed: what the cluster recorded, what not, and
// what it may have.
func (r *record) error() error {
	why := fmt.Sprintf("did not take them within %s", r.wait)
	if errors.Is(r.err, context.DeadlineExceeded) {
		why = fmt.Sprintf("did not answer within %s", r.wait)
	}
	parts := []string{"recorded: " + strings.Join(r.done, ", ")}
	if len(r.missed) > 0 {
		parts = append(parts, "not recorded: "+strings.Join(r.missed, ", "))
	}
	if len(r.unsure) > 0 {
		parts = append(parts, "perhaps recorded, the cluster's answer lost: "+strings.Join(r.unsure, ", "))
	}
	return fmt.Errorf("drill %s: the NATS cluster %s: %s: %w", r.id, why, strings.Join(parts, "; "), r.err)
}

// keepLastRenewal deletes every renewal of the drill on subject, which started at seq, but the
// last: those its runner could not delete as it went, such as one stored as the runner stopped
// renewing, whose answer the stop cut off, or the one before it, whose deletion the stop cut
// short. It runs once the runner's last event is stored, so every renewal it sent before is
// stored or never will be.
func keepLastRenewal(ctx context.Context, drills jetstream.Stream, subject string, seq uint64, log zerolog.Logger, warned *bool) {
	var renewals []uint64
	_, err := forward(ctx, drills, subject, seq, func(m *jetstream.RawStreamMsg) bool {
		if e, err := events.Decode(m.Data); err == nil && e.Type == events.TypeDrillRenewed {
			renewals = append(renewals, m.Sequence)
		}
		return true
	})
	if err != nil {
		log.Warn().Err(err).Msg("drill renewals not read: DRILLS keeps those not deleted")
		return
	}
	for _, r := range renewals[:max(len(renewals)-1, 0)] {
		if err := drills.DeleteMsg(ctx, r); err != nil && !*warned {
			log.Warn().Err(err).Uint64("stream_seq", r).Msg("drill renewal not deleted: DRILLS keeps it")
			*warned = true
		}
	}
}

// ErrEnded means the drill rolled back already: at an operator's request, or on its own.
var ErrEnded = errors.New("has already rolled back")

// ErrNotInForce means no drill of the id is in force: none started, or DRILLS was created again
// since, without it.
var ErrNotInForce = errors.New("is not in force")

// Lookup tells whether drill id is in force, and whether it ended, as the DRILLS stream st holds
// it up to seq at least.
type Lookup func(ctx context.Context, st jetstream.Stream, id string, seq uint64) (inForce, ended bool, err error)

// Rollback records that drill id rolled back at an operator's request. It appends after the
// last event of the drill it read, so that of two rollbacks at once one is recorded and the
// other returns an error wrapping ErrEnded; of a drill not in force, it returns one wrapping
// ErrNotInForce. It tries again every 250 ms for up to storeWithin while DRILLS does not
// answer, as a stream electing its leader answers nothing for seconds.
// look tells where the drill stands; nil folds the drill's events from DRILLS, each attempt
// reading only those stored since the one before (subjectLookup).
func Rollback(ctx context.Context, js jetstream.JetStream, id, by string, look Lookup) error {
	if err := events.CheckToken(id); err != nil {
		return fmt.Errorf("drill id: %w", err)
	}
	if look == nil {
		look = subjectLookup()
	}
	e, err := events.New(events.TypeDrillRolledBack, "drill/"+by, time.Now(), events.DrillRolledBack{By: by, Reason: "requested"})
	if err != nil {
		return err
	}
	end := time.Now().Add(storeWithin)
	for {
		err := rollbackOnce(ctx, js, id, e, look, min(storeAttempt, max(time.Until(end), 0)))
		switch {
		case errors.Is(err, events.ErrConflict):
			continue // another event came first: read again
		case errors.Is(err, ErrNotInForce):
			return fmt.Errorf("drill %s %w", id, ErrNotInForce)
		case err == nil || errors.Is(err, ErrEnded) || ctx.Err() != nil || time.Until(end) < 250*time.Millisecond:
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// subjectLookup returns a Lookup that folds the events of the drill's own subject, which alone
// say whether it is in force, and goes on from where its last call stopped: a rollback whose
// append conflicted with a renewal reads the renewal, not the drill's history again (reading
// that for longer than the runner takes to renew would conflict every time). A DRILLS created
// again is read from its first message.
func subjectLookup() Lookup {
	var v *View
	var created time.Time
	var next uint64
	return func(ctx context.Context, st jetstream.Stream, id string, seq uint64) (bool, bool, error) {
		if c := st.CachedInfo().Created; v == nil || !c.Equal(created) {
			v, created, next = NewView(), c, 1
		}
		if next <= seq {
			var err error
			next, err = forward(ctx, st, events.DrillSubject(id), next, func(m *jetstream.RawStreamMsg) bool {
				if e, err := events.Decode(m.Data); err == nil {
					_, _ = v.Apply(m.Subject, m.Sequence, m.Time, e)
				}
				return m.Sequence < seq
			})
			if err != nil {
				return false, false, fmt.Errorf("read drill %s: %w", id, err)
			}
		}
		return v.Drill(id) != nil, v.Ended(id), nil
	}
}

// rollbackOnce appends e, the rollback of drill id, after the drill's last event, unless the
// drill ended or never started, as look tells; the append is bounded by store.
func rollbackOnce(ctx context.Context, js jetstream.JetStream, id string, e events.Envelope, look Lookup, store time.Duration) error {
	subject := events.DrillSubject(id)
	st, err := js.Stream(ctx, events.StreamDrills)
	if err != nil {
		return fmt.Errorf("read drills: %w", err)
	}
	// The last sequence is read before the drills, so an event stored after it (another
	// rollback among them) makes the append conflict, and is read on the next attempt.
	last, seq, _, err := events.Last(ctx, st, subject)
	if err != nil {
		return err
	}
	if last.ID == e.ID {
		return nil // stored by an attempt whose answer was lost
	}
	inForce, ended, err := look(ctx, st, id, seq)
	switch {
	case err != nil:
		return err
	case ended:
		return fmt.Errorf("drill %s %w", id, ErrEnded)
	case !inForce:
		return ErrNotInForce
	}
	actx, cancel := context.WithTimeout(ctx, store)
	defer cancel()
	_, err = events.Append(actx, js, subject, e, seq)
	return err
}

// storeWithin bounds how long a drill's event is tried before the drill gives up on DRILLS: the
// stream stores nothing while it elects a leader, 4 to 9 s after the JetStream node leading it
// died, and a drill must not end (or be scored) for that.
const storeWithin = 15 * time.Second

// storeAttempt bounds one attempt to store an event: a publish the dying leader took is never
// answered, and must not use up the time of the attempts that follow.
const storeAttempt = time.Second

// publish stores a drill event on subject, trying again every 250 ms, with the same event id
// (stored once), for up to within or until ctx ends. It fails with a *maybeStored when an
// attempt went unanswered.
func publish(ctx context.Context, js jetstream.JetStream, subject, typ, by string, data any, within time.Duration) (*jetstream.PubAck, error) {
	e, err := events.New(typ, "drill/"+by, time.Now(), data)
	if err != nil {
		return nil, err
	}
	end := time.Now().Add(within)
	lost := false
	for {
		actx, cancel := context.WithTimeout(ctx, min(storeAttempt, time.Until(end)))
		ack, err := events.Publish(actx, js, subject, e)
		cancel()
		if err == nil {
			return ack, nil
		}
		// An attempt that got no answer may have been stored, its answer lost; a refusal of
		// one after it (the same Nats-Msg-Id) does not undo it.
		lost = lost || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		if lost {
			err = &maybeStored{err}
		}
		if ctx.Err() != nil || time.Until(end) < 250*time.Millisecond {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// maybeStored is the failure of a publish of which an attempt went unanswered: the cluster may
// have stored the event.
type maybeStored struct{ err error }

func (m *maybeStored) Error() string { return m.err.Error() }
func (m *maybeStored) Unwrap() error { return m.err }

// rollbackCheck bounds one look for a drill's rollback, a direct get that any replica of DRILLS
// answers in a millisecond: a look that goes unanswered (the replica asked died) is as if none
// was made, and must not delay the measuring it runs beside.
const rollbackCheck = 250 * time.Millisecond

// rollbackWatch finds the rollback of a drill among the events of its subject, reading them
// forward from the last one it read. The runner renews its lease on that subject every Lease/3,
// beside its steps and hold, so a renewal stored right after a rollback (by an operator's drill
// rollback, or a controller's) would hide it from a look at the subject's last event alone. It
// reads from drills, a handle opened before the drill started: opening DRILLS asks its leader,
// which there is none of while the stream elects one; the reads are direct gets, which any
// replica answers.
type rollbackWatch struct {
	drills  jetstream.Stream
	subject string
	next    uint64 // the first sequence not read yet
	found   string // "REASON by WHO", once read
}

// check returns "REASON by WHO" once the drill's subject holds its rollback.
func (w *rollbackWatch) check(ctx context.Context) (string, error) {
	if w.found != "" {
		return w.found, nil
	}
	ctx, cancel := context.WithTimeout(ctx, rollbackCheck)
	defer cancel()
	from := w.next
	next, err := forward(ctx, w.drills, w.subject, from, func(m *jetstream.RawStreamMsg) bool {
		e, err := events.Decode(m.Data)
		if err != nil || e.Type != events.TypeDrillRolledBack {
			return true
		}
		var r events.DrillRolledBack
		if err := e.Payload(&r); err != nil {
			return true
		}
		w.found = r.Reason + " by " + r.By
		return false
	})
	w.next = next
	if err != nil {
		return "", fmt.Errorf("read %s from %d: %w", w.subject, from, err)
	}
	return w.found, nil
}

// forward calls f with each message st holds on subject (a filter, wildcards allowed) from
// sequence from on, in stream order, until f returns false or no message is left, and returns
// the sequence after the last message read. Each read asks for the next message held, so
// messages deleted (the renewals a runner replaced) cost nothing.
func forward(ctx context.Context, st jetstream.Stream, subject string, from uint64, f func(*jetstream.RawStreamMsg) bool) (uint64, error) {
	for {
		m, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return from, nil
		}
		if err != nil {
			return from, err
		}
		from = m.Sequence + 1
		if !f(m) {
			return from, nil
		}
	}
}

// measure waits until every answer and route sp expects differently from prev is observed, or
// until twice the step's rto (at least rto + 2s), or until rb (when not nil) finds the drill
// rolled back, and scores the step.
func measure(ctx context.Context, o Options, rb *rollbackWatch, prev, sp StepPlan, t0 time.Time) StepScore {
	score := StepScore{Index: sp.Index, Step: sp.Step, RTO: Millis(sp.RTO)}
	var watch []Observation
	for _, want := range sp.Answers {
		if !slices.Contains(prev.Answers, want) {
			watch = append(watch, want)
		}
	}
	var routes []Observation
	for _, want := range sp.Routes {
		if !slices.Contains(prev.Routes, want) {
			routes = append(routes, want)
		}
	}
	// Requests through every edge that fronts an app this step changes (and that the drill does
	// not fail): users reaching it must still be served.
	for _, e := range o.Config.Edges {
		if slices.ContainsFunc(sp.Failures, func(f events.Failure) bool { return f.Kind == events.FailEdge && f.Edge == e.Name }) {
			continue
		}
		for _, ea := range e.Apps {
			a := o.Config.App(ea.App)
			changed := slices.ContainsFunc(watch, func(w Observation) bool { return a != nil && w.What == config.Canonical(a.FQDN) }) ||
				slices.ContainsFunc(routes, func(w Observation) bool { return strings.HasSuffix(w.What, " "+ea.App) })
			if changed {
				routes = append(routes, Observation{What: "request via " + e.Name + " " + ea.App, Answer: served})
			}
		}
	}
	score.Expected = append(slices.Clone(watch), routes...)
	deadline := t0.Add(max(2*sp.RTO, sp.RTO+2*time.Second))
	seen := map[string]time.Time{}
	var observed map[string]reading
	firstLook := true
	for {
		observed = observe(ctx, o, watch, routes)
		for _, w := range append(slices.Clone(watch), routes...) {
			if _, ok := seen[w.What]; !ok && observed[w.What].answer == w.Answer {
				seen[w.What] = observed[w.What].at
			}
		}
		if len(seen) == len(watch)+len(routes) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		firstLook = false
		if rb != nil {
			if found, _ := rb.check(ctx); found != "" {
				score.RolledBack = found
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
	var last time.Time
	var missing []string
	for _, w := range score.Expected {
		score.Observed = append(score.Observed, Observation{What: w.What, Answer: observed[w.What].answer})
		at, ok := seen[w.What]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s is %q, want %q", w.What, observed[w.What].answer, w.Answer))
			continue
		}
		last = latestTime(last, at)
	}
	switch {
	case score.RolledBack != "":
		score.Reason = "rolled back (" + score.RolledBack + ") before the switch"
	case len(missing) > 0:
		score.Reason = fmt.Sprintf("not switched after %s (rto %s): %s", Millis(time.Since(t0)), Millis(sp.RTO), strings.Join(missing, "; "))
	case len(score.Expected) == 0:
		score.Pass, score.Reason = true, "nothing users see was expected to change"
	default:
		score.Switch = Millis(last.Sub(t0))
		score.Pass = last.Sub(t0) <= sp.RTO
		score.Reason = switchReason(score.Switch, score.RTO, firstLook)
	}
	return score
}

// switchReason says how a step switched: in d, against its rto. A switch the runner saw at its
// first look happened while the runner was still recording the step's event and asking: d is
// then the runner's own latency, an upper bound, not a measure of the failover.
func switchReason(d, rto Millis, firstLook bool) string {
	within := "within"
	if time.Duration(d) > time.Duration(rto) {
		within = "over"
	}
	if firstLook {
		return fmt.Sprintf("switched before the runner's first look, %s after the step began (an upper bound: the runner's own latency), %s the rto of %s", d, within, rto)
	}
	return fmt.Sprintf("switched in %s, %s the rto of %s", d, within, rto)
}

// baselineWait bounds how long a drill waits for the DNS servers to answer what STATE says
// before its first step.
const baselineWait = 5 * time.Second

// awaitBaseline waits until every DNS server answers what the plan expects before the drill:
// a step measured from answers that had not caught up with STATE yet would be scored as switched
// at once. It refuses the drill, naming each differing answer, when they do not agree in time.
func awaitBaseline(ctx context.Context, o Options, before StepPlan) error {
	if len(o.DNS) == 0 || len(before.Answers) == 0 {
		return nil
	}
	deadline := time.Now().Add(baselineWait)
	for {
		observed := observe(ctx, o, before.Answers, nil)
		var differ []string
		for _, w := range before.Answers {
			if observed[w.What].answer != w.Answer {
				differ = append(differ, fmt.Sprintf("%s is %q, STATE says %q", w.What, observed[w.What].answer, w.Answer))
			}
		}
		if len(differ) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%w: the DNS servers do not answer what STATE says after %s: %s", ErrRefused, baselineWait, strings.Join(differ, "; "))
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
}

func latestTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// reading is what one observation found, and when the runner had it.
type reading struct {
	answer string
	at     time.Time
}

// observe asks every DNS server for the watched names (all must agree, else the first
// disagreeing answer is reported) and reads the edges' latest route tables. Each reading is
// timed when it was in hand, so a switch is never dated before the look that saw it.
func observe(ctx context.Context, o Options, answers, routes []Observation) map[string]reading {
	out := map[string]reading{}
	for _, w := range answers {
		var got string
		for i, server := range o.DNS {
			a := ask(server, w.What)
			if i == 0 || a != got && got == w.Answer {
				got = a
			}
		}
		out[w.What] = reading{got, time.Now()}
	}
	if len(routes) > 0 {
		if s, err := o.JS.Stream(ctx, events.StreamRoutes); err == nil {
			for _, w := range routes {
				if rest, ok := strings.CutPrefix(w.What, "request via "); ok {
					out[w.What] = reading{request(o.Config, rest), time.Now()}
					continue
				}
				edge, app, _ := strings.Cut(w.What, " ")
				if !events.ValidToken(edge) || !events.ValidToken(app) {
					continue
				}
				e, _, ok, err := events.Last(ctx, s, events.AppRouteSubject(edge, app))
				var r events.EdgeRoute
				if err != nil || !ok || e.Payload(&r) != nil {
					continue
				}
				out[w.What] = reading{RouteText(r.Route), time.Now()}
			}
		}
	}
	return out
}

// served is what a request through an edge answers when a user is served: any HTTP status
// below 500 (the app's own answer, whatever it is), not a gateway error or no answer.
const served = "served"

// request sends GET / through the listener of "EDGE APP" and says whether it was served.
func request(c *config.Config, edgeApp string) string {
	edge, app, _ := strings.Cut(edgeApp, " ")
	e := c.Edge(edge)
	if e == nil || e.App(app) == nil {
		return "no such edge"
	}
	client := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get("http://" + e.App(app).Listen + "/")
	if err != nil {
		return "error: " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 500 {
		return "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return served
}

// ask queries server for name's A records and returns them as AnswerText does.
func ask(server, name string) string {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, server)
	if err != nil {
		return "error: " + err.Error()
	}
	var ips []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			if strings.EqualFold(rr.Hdr.Name, name) {
				return "CNAME " + config.Canonical(rr.Target)
			}
		case *dns.A:
			ips = append(ips, rr.A.String())
		}
	}
	if len(ips) == 0 {
		return "(no records)"
	}
	slices.Sort(ips)
	return strings.Join(ips, " ")
}

// stateReads is how many reads of STATE ReadState has in flight at once.
const stateReads = 16

// ReadState reads the latest STATE event of every subject c names into a view, and the regions'
// votes its latest endpoint transitions recorded.
func ReadState(ctx context.Context, js jetstream.JetStream, c *config.Config) (*state.View, Votes, error) {
	s, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		return nil, nil, fmt.Errorf("read state: %w", err)
	}
	v, votes := state.NewView(), Votes{}
	var subjects []string
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			subjects = append(subjects, events.PoolStateSubject(a.Name, p.Name), events.OverrideSubject(a.Name, p.Name, ""))
			for _, e := range p.Endpoints {
				subjects = append(subjects, events.EndpointStateSubject(a.Name, p.Name, e.Name), events.OverrideSubject(a.Name, p.Name, e.Name))
			}
		}
	}
	for _, e := range c.Edges {
		subjects = append(subjects, events.EdgeStateSubject(e.Name))
	}
	// The reads are independent: they run stateReads at a time, so a plan on a link of seconds a
	// round trip takes a few of them, not one per subject; they are folded in order.
	type last struct {
		e   events.Envelope
		seq uint64
		ok  bool
		err error
	}
	got := make([]last, len(subjects))
	var wg sync.WaitGroup
	turns := make(chan struct{}, stateReads)
	for i, subject := range subjects {
		turns <- struct{}{}
		wg.Go(func() {
			defer func() { <-turns }()
			e, seq, ok, err := events.Last(ctx, s, subject)
			got[i] = last{e, seq, ok, err}
		})
	}
	wg.Wait()
	for i, subject := range subjects {
		e, seq, ok, err := got[i].e, got[i].seq, got[i].ok, got[i].err
		if err != nil && !errors.Is(err, events.ErrMalformed) {
			return nil, nil, fmt.Errorf("read state: %w", err)
		}
		if ok && err == nil {
			_, _ = v.Apply(subject, seq, e)
			var t events.Transition
			if _, isStatus := events.TransitionStatus(e.Type); isStatus && e.Payload(&t) == nil && len(t.Votes) > 0 {
				votes[subject] = t.Votes
			}
		}
	}
	return v, votes, nil
}

// ReadDrills folds the whole DRILLS stream into a view of the drills in force.
func ReadDrills(ctx context.Context, js jetstream.JetStream) (*View, error) {
	s, err := js.Stream(ctx, events.StreamDrills)
	if err != nil {
		return nil, fmt.Errorf("read drills: %w", err)
	}
	return readDrills(ctx, s)
}

// readDrills folds the DRILLS stream s, from its first message, into a view. Each read asks for
// the next message held, so the renewals the runners deleted cost nothing.
func readDrills(ctx context.Context, s jetstream.Stream) (*View, error) {
	v := NewView()
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read drills: %w", err)
	}
	if info.State.Msgs == 0 {
		return v, nil
	}
	_, err = forward(ctx, s, events.SubjectDrills, info.State.FirstSeq, func(m *jetstream.RawStreamMsg) bool {
		if e, err := events.Decode(m.Data); err == nil {
			_, _ = v.Apply(m.Subject, m.Sequence, m.Time, e)
		}
		return m.Sequence < info.State.LastSeq
	})
	if err != nil {
		return nil, fmt.Errorf("read drills: %w", err)
	}
	return v, nil
}
