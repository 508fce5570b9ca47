package prober

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure one prober worker.
type Options struct {
	// JS is the JetStream context results are published with and the membership bucket lives in.
	JS jetstream.JetStream
	// Config is the configuration whose checks the worker runs.
	Config *config.Config
	// Configs, when set, delivers later configurations; each replaces the checks at once.
	Configs <-chan *config.Config
	// Region is where this worker probes from; results carry it. A subject token.
	Region string
	// Name is this worker's id, unique within its region. A subject token.
	Name string
	// Log receives the worker's logs; it gets a component=prober field.
	Log zerolog.Logger
	// Clock drives scheduling. Default: the system clock.
	Clock Clock
	// Heartbeat is how often the worker refreshes its membership record. Default: a third of the
	// shortest check interval, within 100ms and 1s, so that with the default MemberTTL a dead
	// worker's checks move within two intervals (for intervals under 1 s, within 1 s and one
	// interval).
	Heartbeat time.Duration
	// MemberTTL is how long a member stays live without a heartbeat; a dead worker's checks move
	// to the others after at most this long, and a worker stalled for longer than this less a
	// heartbeat loses its checks meanwhile. At least 2 × Heartbeat (CheckMemberTTL). Default
	// 3 × Heartbeat, at least minMemberTTL (1 s).
	MemberTTL time.Duration
	// JoinDelay is how long after announcing itself a worker starts taking checks, so that every
	// other member (including one starting at the same moment) has seen it and hands its checks
	// over at the same instant; and how long a stopping worker goes on taking them after saying
	// so, for the others to take them over at that instant. Default Heartbeat.
	JoinDelay time.Duration
	// BatchWindow gathers results for throughput. A result that finds the publisher idle (none
	// sent within the last window) goes out at once, alone, on its endpoint's subject; results
	// completing within the window after it go out together when it ends, as one batch message on
	// detour.probe.<region>._endpoints._batch.<name> for endpoints and one on detour.probe.<region>._edge.<name>
	// for edge listeners (an endpoint's result alone, if only one came). So a worker checking a few
	// endpoints publishes every result the moment it completes, and one checking thousands a
	// second sends a message every window. Default 2ms; negative: every result alone, at once.
	BatchWindow time.Duration
	// Metrics, when set, counts the checks and their latency.
	Metrics *metrics.Metrics
	// CredentialDirs are the directories the checks' headers_file and send_file may name a
	// file in: a check naming one elsewhere fails, saying so, without the file being read.
	// Default: none.
	CredentialDirs config.CredentialDirs
}

func (o *Options) defaults() error {
	var errs []error
	if o.JS == nil {
		errs = append(errs, errors.New("js: missing"))
	}
	if o.Config == nil {
		errs = append(errs, errors.New("config: missing"))
	}
	if err := events.CheckToken(o.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	} else if o.Config != nil && !o.Config.RegionAllowed(o.Region) {
		errs = append(errs, fmt.Errorf("region: %q is not among the configured regions %v (its results would be dropped)", o.Region, o.Config.ProbingRegions()))
	}
	if err := events.CheckToken(o.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if o.Heartbeat < 0 || o.MemberTTL < 0 || o.JoinDelay < 0 {
		errs = append(errs, errors.New("heartbeat, member_ttl, join_delay: must not be negative"))
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Heartbeat == 0 && o.Config != nil {
		o.Heartbeat = DefaultHeartbeat(o.Config)
	}
	if o.MemberTTL == 0 {
		o.MemberTTL = max(3*o.Heartbeat, minMemberTTL)
	}
	if err := CheckMemberTTL(o.MemberTTL, o.Heartbeat); err != nil {
		errs = append(errs, fmt.Errorf("member_ttl: %w", err))
	}
	if o.JoinDelay == 0 {
		o.JoinDelay = o.Heartbeat
	}
	if o.BatchWindow == 0 {
		o.BatchWindow = 2 * time.Millisecond
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prober options: %w", err)
	}
	return nil
}

// minMemberTTL is the least default MemberTTL: with checks of 300 ms or less (a 100 ms heartbeat)
// three heartbeats would survive a stall of only 200 ms (a GC pause, a busy host) before the
// others take a live worker's checks and it counts itself gone; a second survives 900 ms, and
// costs a crashed worker's checks at most 700 ms more before they move.
const minMemberTTL = time.Second

// CheckMemberTTL reports whether ttl can be a member TTL at heartbeat: at least two heartbeats,
// so that a record stored a heartbeat late still renews the lease before it runs out, and at
// most an hour.
func CheckMemberTTL(ttl, heartbeat time.Duration) error {
	switch {
	case ttl > maxMemberTTL:
		return fmt.Errorf("want at most %s, got %s", maxMemberTTL, ttl)
	case ttl < 2*heartbeat:
		return fmt.Errorf("%s is shorter than two heartbeats (2 × %s)", ttl, heartbeat)
	}
	return nil
}

// MinHeartbeat is the shortest DefaultHeartbeat, whatever the configuration.
const MinHeartbeat = 100 * time.Millisecond

// DefaultHeartbeat is a third of the configuration's shortest check interval, within 100ms and 1s.
func DefaultHeartbeat(c *config.Config) time.Duration {
	hb := time.Second
	for _, a := range c.Apps {
		hb = min(hb, a.Check.Interval.D()/3)
	}
	return max(hb, MinHeartbeat)
}

// Run probes from one region until ctx ends, then leaves the membership and returns nil. It
// returns an error when the options are invalid; while JetStream cannot be reached at start it
// waits. Stopped once it has joined (a rolling restart's SIGTERM), it stores a record saying it
// takes checks until JoinDelay from then, when the others take them over; runs the windows that
// come before that; lets the checks in flight end, each within its timeout and all within
// StopGrace, and publishes their results; and only then leaves. Where it cancelled its checks in
// flight and left at once, the windows they were in went without a result (the others counted
// them as its own), and so did the ones that came before the others saw it gone.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Log.With().Str("component", "prober").Str("region", o.Region).Str("prober", o.Name).Logger()
	kv, err := waitMembersBucket(ctx, o.JS, log)
	if err != nil {
		return nil // ctx ended while JetStream was away
	}
	driftCtx, stopDrift := context.WithCancel(ctx)
	defer stopDrift()
	go watchRollups(driftCtx, func(ctx context.Context) (bool, bool) { return allowsRollups(ctx, kv) }, driftEvery, log)
	// A JetStream context of our own, so failed asynchronous publishes are counted here.
	pub := newPublisher(nil, o.Region, o.Name, o.BatchWindow, o.Clock)
	js, err := events.NewJetStream(o.JS.Conn(), jetstream.WithPublishAsyncErrHandler(
		func(jetstream.JetStream, *nats.Msg, error) { pub.failed.Add(1) }),
		jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return fmt.Errorf("open jetstream context: %w", err)
	}
	pub.js = js

	self := Member{Region: o.Region, Name: o.Name, TTLMillis: o.MemberTTL.Milliseconds()}
	m := &membership{kv: kv, js: o.JS, self: self, clock: o.Clock, log: log,
		roster: NewRoster(self, o.Heartbeat), changed: make(chan struct{}, 1), ready: make(chan struct{})}
	// The membership outlives the stop of a worker that joined, until it leaves: its heartbeats
	// keep it live for the others while it finishes its checks. One stopped before it joined
	// ends at once.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	starting := context.AfterFunc(ctx, cancel)
	bg.Go(func() { m.follow(runCtx, o.JS) })
	// Know the region's members before joining, or this worker would count itself alone and run
	// their checks too. Then announce a start instant far enough ahead that every member has
	// seen the record by then and hands its checks over at that very instant. A view not read
	// within a heartbeat (the node holding this worker's last membership consumer hangs, and
	// the watch waits for it for seconds) would leave the region's checks unrun meanwhile
	// where this is its only worker, or all of them restart at once: the worker joins then and
	// runs every check of its region, as if alone, until the view is read, by its watch or from
	// the bucket (readUnwatched: at once, then at each heartbeat while the watch waits).
	wait, stopWait := o.Clock.NewTimer(o.Heartbeat)
	select {
	case <-m.ready:
		stopWait()
	case <-runCtx.Done():
		stopWait()
		return nil
	case <-wait:
		m.mu.Lock()
		select {
		case <-m.ready:
		default:
			m.alone, m.unwatched = true, true
			log.Warn().Dur("waited", o.Heartbeat).
				Msg("membership view not read within a heartbeat: checking every endpoint of the region until it is")
		}
		m.mu.Unlock()
	}
	m.mu.Lock()
	m.self.Started = o.Clock.Now()
	m.mu.Unlock()
	if m.join(runCtx, o.Heartbeat, o.JoinDelay) != nil || !starting() {
		// Stopped while storing its first record, which may be stored.
		if err := m.leave(); err != nil {
			log.Warn().Err(err).Msg("left without deleting the member record")
		}
		return nil
	}

	bg.Go(func() {
		rctx, cancel := context.WithTimeout(runCtx, putBudget(o.Heartbeat, o.MemberTTL))
		defer cancel()
		m.readUnwatched(rctx)
	})

	w := &worker{o: o, log: log, members: m, pub: pub, transports: newSharedTransports(), pool: newPool(10 * time.Second)}
	defer w.pool.close()
	w.run = w.execute
	var stopBy time.Time // once stopping: StopGrace after the stop
	w.retire = func() (time.Time, <-chan struct{}) {
		now := o.Clock.Now()
		until := now.Add(o.JoinDelay)
		stopBy = now.Add(StopGrace)
		stored := m.retire(until)
		log.Info().Time("active_until", until).Msg("prober stopping")
		bg.Go(func() {
			// Till a record saying so is stored (this one or a heartbeat's), the others count
			// this worker's windows as its own, and it runs them; up to StopGrace.
			actx, cancel := context.WithTimeout(runCtx, min(putBudget(o.Heartbeat, o.MemberTTL), StopGrace))
			defer cancel()
			if err := m.announce(actx); err != nil {
				log.Warn().Err(err).Msg("the record saying when this worker stops was not stored: the others take its checks when it leaves")
				m.retired()
			}
		})
		return until, stored
	}
	bg.Go(func() { w.heartbeat(runCtx) })
	// The batcher outlives the dispatcher, so checks completing during shutdown still publish.
	pubCtx, pubCancel := context.WithCancel(context.Background())
	defer pubCancel()
	if pub.window > 0 {
		go pub.batches(pubCtx)
	} else {
		close(pub.done)
	}
	log.Info().Int("checks", len(Targets(o.Config))).Dur("member_ttl", o.MemberTTL).
		Time("active_from", m.self.ActiveFrom).Msg("prober started")
	checks, stopChecks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChecks()
	w.dispatch(ctx, checks)

	// Checks in flight end as they would have, within their timeouts, up to StopGrace after the
	// stop, whatever the wait for the record saying so took (a check that grace cuts short is
	// no fact about its endpoint, and is not published); then the last batch goes out and
	// JetStream acknowledges what is left.
	drained := make(chan struct{})
	go func() { w.inflight.Wait(); close(drained) }()
	grace, stopGrace := o.Clock.NewTimer(stopBy.Sub(o.Clock.Now()))
	select {
	case <-drained:
		stopGrace()
	case <-grace:
		stopChecks()
		<-drained
	}
	pubCancel()
	<-pub.done
	flushCtx, flushCancel := context.WithTimeout(context.Background(), 2*time.Second)
	pub.flush(flushCtx)
	flushCancel()
	js.CleanupPublisher()
	cancel()
	bg.Wait()
	if err := m.leave(); err != nil {
		log.Warn().Err(err).Msg("left without deleting the member record")
	}
	if n := pub.failed.Load(); n > 0 {
		log.Warn().Int64("results", n).Msg("some probe results were not stored")
	}
	log.Info().Msg("prober stopped")
	return nil
}

type worker struct {
	o          Options
	log        zerolog.Logger
	members    *membership
	pub        *publisher
	transports *sharedTransports
	inflight   sync.WaitGroup
	pool       *pool
	// late counts checks started more than a tenth of their interval after their instant, and
	// skipped the windows missed altogether, since the last report.
	late, skipped atomic.Int64
	// run executes one check of a window with a timeout; it is execute, or a recorder in tests.
	run func(ctx context.Context, s *slot, n int64, timeout time.Duration)
	// retire, called when the worker stops, says so to the others and returns the instant it
	// stops taking checks at, and a channel closed once a record saying so is stored (or
	// storing one was given up).
	retire func() (time.Time, <-chan struct{})
}

// StopGrace bounds how long a stopping worker, from its stop, runs its last windows and waits
// for its checks in flight to end; its last results and its leaving may then wait up to 2 s
// each for NATS, so that it returns within 9 s, under the 10 s docker stop waits.
const StopGrace = 5 * time.Second

// heartbeat refreshes this worker's record, logs changes of the live members and reports lost
// results now and then.
func (w *worker) heartbeat(ctx context.Context) {
	var reported int64
	var members []string
	failing := false
	// stored receives the outcome of the record being stored, and is nil while none is; owed is
	// set when a heartbeat came while one was, so the next is stored as soon as it is done.
	var stored chan error
	owed := false
	// flushes counts the server's answers awaited, each until its context ends with ctx; at
	// most maxFlushes are awaited at once, each holding a place in flying.
	var flushes sync.WaitGroup
	flying := make(chan struct{}, maxFlushes)
	// reads counts the bucket's reads of the view after a record stored (readUnwatched), one at
	// a time while reading is set.
	var reads sync.WaitGroup
	var reading atomic.Bool
	defer func() {
		if stored != nil {
			<-stored // its context ends with ctx; Run deletes the record only after it
		}
		flushes.Wait()
		reads.Wait()
	}()
	// A heartbeat has until the last stored record expires (MemberTTL after it, a heartbeat ago):
	// stored by then, it keeps this worker live for the others without a gap, however busy the
	// connection (a prober checking thousands of endpoints a second publishes its results on
	// it). Past that it is failed: waiting longer (nats.go's 5 s) would let the others drop this
	// worker meanwhile.
	store := func() {
		stored = make(chan error, 1)
		go func(stored chan<- error) {
			actx, cancel := context.WithTimeout(ctx, putBudget(w.o.Heartbeat, w.o.MemberTTL))
			defer cancel()
			err := w.members.announce(actx)
			// The bucket's read of a view the watch has not read yet goes apart from the
			// store, so that a read waiting on a hung node does not hold the next record.
			if err == nil && reading.CompareAndSwap(false, true) {
				reads.Add(1)
				go func() {
					defer func() { reading.Store(false); reads.Done() }()
					rctx, cancel := context.WithTimeout(ctx, putBudget(w.o.Heartbeat, w.o.MemberTTL))
					defer cancel()
					w.members.readUnwatched(rctx)
				}()
			}
			stored <- err
		}(stored)
	}
	next := w.o.Clock.Now().Add(w.o.Heartbeat)
	nextLag := next.Add(lagEvery)
	// A worker that stays behind says so once a minute, with the count of reports held back.
	lagging := logs.NewRepeats(6 * lagEvery)
	for {
		tick, stop := w.o.Clock.NewTimer(next.Sub(w.o.Clock.Now()))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-w.members.changed:
			stop()
			members = w.logMembers(members)
			continue
		case err := <-stored:
			stop()
			stored = nil
			if err != nil {
				if !failing && ctx.Err() == nil {
					w.log.Warn().Err(err).Msg("heartbeat failed")
				}
				failing = true
			} else if failing {
				failing = false
				w.log.Info().Msg("heartbeat restored")
			}
			if owed {
				owed = false
				store()
			}
			continue
		case <-tick:
		}
		next = next.Add(w.o.Heartbeat)
		if now := w.o.Clock.Now(); next.Before(now) {
			next = now.Add(w.o.Heartbeat) // fell behind: do not burst
		}
		members = w.logMembers(members)
		// While the NATS server answers, this worker is not cut off: it counts itself live from
		// now whether or not the bucket stores its record (it cannot while it elects a leader
		// after a JetStream node died). That comes at every heartbeat, whatever a record being
		// stored waits for: waiting for a store that fails (its whole budget) would renew the
		// worker's own lease only every MemberTTL less a heartbeat, so that the worker would
		// drop out, taking no checks, whenever it ran a heartbeat late. The server's answer
		// counts until the lease would run out (putBudget, as a record's), not just within a
		// heartbeat: on a loaded machine it may come later than that, and the worker is not cut
		// off. Each is awaited apart, so that a late one delays neither the next heartbeat's nor
		// the records; one never answered renews nothing, and the lease runs out. While
		// maxFlushes are awaited (the server cut off, with a long TTL), this heartbeat asks
		// nothing: the server answers in order, so the oldest awaited is answered first and
		// frees a place for the next heartbeat, and nothing is lost but the ones that would
		// have piled up, one a heartbeat for the TTL, each holding a goroutine and a pending
		// ping. Keeping the newest instead, the older given up, would never renew the lease
		// from a server answering later than a heartbeat.
		select {
		case flying <- struct{}{}:
			sent := w.o.Clock.Now()
			flushes.Add(1)
			go func() {
				defer func() { <-flying; flushes.Done() }()
				fctx, cancel := context.WithTimeout(ctx, putBudget(w.o.Heartbeat, w.o.MemberTTL))
				defer cancel()
				if w.o.JS.Conn().FlushWithContext(fctx) == nil {
					w.members.stillHere(sent)
				}
			}()
		default:
		}
		if stored == nil {
			store()
		} else {
			owed = true
		}
		if n := w.pub.failed.Load(); n > reported {
			w.log.Warn().Int64("results", n-reported).Msg("probe results not stored")
			reported = n
		}
		if now := w.o.Clock.Now(); !now.Before(nextLag) {
			late, skipped := w.late.Swap(0), w.skipped.Swap(0)
			if late > 0 || skipped > 0 {
				lagging.Gate(w.log.Warn(), "lag").Int64("checks_late", late).Int64("windows_skipped", skipped).Dur("since", lagEvery).
					Msg("prober falling behind its schedule: add workers to the region or give it more cpu")
			}
			nextLag = now.Add(lagEvery)
		}
	}
}

// putBudget is how long one heartbeat's record may take to be stored, and its server to answer
// it: until the record stored a heartbeat earlier expires, and at least a heartbeat.
func putBudget(heartbeat, ttl time.Duration) time.Duration { return max(heartbeat, ttl-heartbeat) }

// maxFlushes is how many of its server's answers a worker awaits at once. A server answering
// later than maxFlushes heartbeats still renews the lease every eighth of its delay and a
// heartbeat (each answer frees a place for the next heartbeat), so the worker stays live while
// the delay is under 8/9 of its TTL less a heartbeat.
const maxFlushes = 8

// lagEvery is how often a worker that falls behind its schedule says so.
const lagEvery = 10 * time.Second

// logMembers logs the live members when they differ from last.
func (w *worker) logMembers(last []string) []string {
	live := w.members.live(w.o.Clock.Now())
	if slices.Equal(live, last) {
		return last
	}
	w.log.Info().Strs("members", live).Msg("prober members changed")
	return slices.Clone(live)
}

// slot is one check in the dispatch queue.
type slot struct {
	t      Target
	key    string
	c      checker
	window int64
	at     time.Time
	// first is the check's first window in this schedule and prior the instant of the last
	// window it reached before it, in the schedule the configuration replaced (zero: none).
	first int64
	prior time.Time
	// hold, while the check has reached no window of this schedule, is the instant it may not
	// run before: one interval after the last window it reached under another interval (zero:
	// none). A configuration that keeps the interval keeps it.
	hold time.Time
	// runs holds back the check's next run while one is in flight; a configuration that keeps
	// the check hands it on, so a run of the old one still holds back the next.
	runs *runState
	// series counts the check's results in the metrics, one run at a time.
	series *metrics.ProbeSeries
}

// last is the instant of the last window the check reached, in which it could have run: the one
// before its next window, or the last it reached in the schedule this one replaced (zero: none).
// It is reckoned from the windows, not from the runs, so every worker of the region has the same.
func (s *slot) last() time.Time {
	if s.window > s.first {
		return SlotTime(s.key, s.t.Check.Interval.D(), s.t.Check.Jitter.D(), s.window-1)
	}
	return s.prior
}

// build makes the dispatch queue of a configuration, each check at its next instant after now.
// A check the old queue had, with the same interval, keeps its next window there (at that
// window's instant with its jitter now): a window it already ran in is not run again, however
// soon after the run the configuration comes or wherever a new jitter puts the instant, and
// one whose instant passed before the configuration was taken still runs (late) rather than
// being skipped. One whose interval changed starts at its first instant of the new interval
// no sooner than one new interval after the last window it reached, so that it is never
// probed twice within the new interval, lengthened or shortened; a configuration that changes
// only its jitter before it got there moves it no sooner.
func (w *worker) build(c *config.Config, now time.Time, old *queue) queue {
	var prev map[string]*slot
	if old != nil {
		prev = make(map[string]*slot, old.len())
		for _, e := range old.e {
			prev[e.s.key] = e.s
		}
	}
	ts := Targets(c)
	ss := make([]*slot, 0, len(ts))
	// Each file the checks read is read once here, whatever number of checks share it.
	files := newCheckFiles(w.o.Clock.Now, w.log, config.FileRecheck, w.o.CredentialDirs)
	roots := false
	for _, t := range ts {
		if t.Check.Type == config.CheckHTTPS && !roots {
			// Load the system's roots now rather than inside the first check's timeout.
			_, _ = x509.SystemCertPool()
			roots = true
		}
		ck, err := newChecker(t, w.transports, files)
		if err != nil {
			// Run it anyway: its results say what is wrong, where the operator looks.
			ck = brokenChecker{err: err}
		}
		s := &slot{t: t, key: t.Key(), c: ck, runs: new(runState), series: w.o.Metrics.ProbeSeries(t.App, w.o.Region)}
		interval, jitter := t.Check.Interval.D(), t.Check.Jitter.D()
		s.window, s.at = NextSlot(s.key, interval, jitter, now)
		if p := prev[s.key]; p != nil {
			delete(prev, s.key)
			s.runs, s.prior = p.runs, p.last()
			s.runs.retarget(s)
			if p.t.Check.Interval == t.Check.Interval {
				s.window, s.at = p.window, SlotTime(s.key, interval, jitter, p.window)
				if p.window == p.first {
					s.hold = p.hold
				}
			} else if !s.prior.IsZero() {
				s.hold = s.prior.Add(interval)
			}
			if s.at.Before(s.hold) {
				s.window, s.at = NextSlot(s.key, interval, jitter, s.hold)
			}
		}
		s.first = s.window
		ss = append(ss, s)
	}
	// A check the configuration dropped runs no window owed to its run in flight.
	for _, p := range prev {
		p.runs.retarget(nil)
	}
	return newQueue(ss)
}

// dispatch starts each check this worker owns at its instant, with checks as their context,
// until ctx ends and then until the instant the worker stops taking checks at (retire), or
// until the record saying so is stored if that comes later.
func (w *worker) dispatch(ctx, checks context.Context) {
	clock := w.o.Clock
	configs := w.o.Configs
	q := w.build(w.o.Config, clock.Now(), nil)
	stopping := ctx.Done()
	// Once stopping: until is when the others take the checks over, stored is closed once they
	// can know it, and end, set then, when this worker stops running them: until, or when the
	// record saying so was stored if later, since the others counted the windows before that
	// as its own.
	var until, end time.Time
	var stored <-chan struct{}
	for {
		now := clock.Now()
		// The windows due before end are this worker's, however late it woke for them.
		due := now.UnixNano()
		if !end.IsZero() && !now.Before(end) {
			due = end.UnixNano() - 1
		}
		for ; q.len() > 0 && q.topAt() <= due; q.fixTop() {
			s := q.top()
			interval := s.t.Check.Interval.D()
			if now.Sub(s.at) < interval {
				if Owner(s.key, w.members.shards(s.at)) == w.o.Name {
					switch s.runs.start(s, s.window, s.at) {
					case started:
						if now.Sub(s.at) > interval/10 {
							w.late.Add(1)
						}
						w.inflight.Add(1)
						n := s.window
						w.pool.do(func() { w.runFrom(checks, s, n) })
					case replaced:
						w.skipped.Add(1)
					}
				}
				s.window++
				s.at = SlotTime(s.key, interval, s.t.Check.Jitter.D(), s.window)
			} else {
				// The worker fell more than a window behind (it was paused): skip, never catch up.
				w.skipped.Add(1)
				s.window, s.at = NextSlot(s.key, interval, s.t.Check.Jitter.D(), now)
			}
		}
		if !end.IsZero() && !now.Before(end) {
			return
		}
		var wait <-chan time.Time
		stop := func() bool { return false }
		next := end
		if q.len() > 0 && (next.IsZero() || q.top().at.Before(next)) {
			next = q.top().at
		}
		if !next.IsZero() {
			wait, stop = clock.NewTimer(next.Sub(now))
		}
		select {
		case <-stopping:
			stop()
			stopping = nil
			until, stored = w.retire()
		case <-stored:
			stop()
			stored = nil
			end = until
			if now := clock.Now(); now.After(end) {
				end = now
			}
		case <-wait:
		case c, ok := <-configs:
			stop()
			if !ok {
				configs = nil // no more configurations: keep the current one
				continue
			}
			if c != nil {
				q = w.build(c, clock.Now(), &q)
				w.log.Info().Int("checks", q.len()).Msg("prober configuration replaced")
			}
		}
	}
}

// runState is what holds back a check's next run while one is in flight. A window whose
// instant comes meanwhile is owed, and runs as soon as the run in flight ends, where it was
// skipped: a check whose timeout is its interval (the default up to 2 s) against an endpoint
// that never answers ends just after its next instant, so every other window went unchecked,
// and a hung endpoint took twice as long to be taken down.
type runState struct {
	mu      sync.Mutex
	running bool
	// owed, while a run is in flight, is the slot of the window owed (nil: none), owedN that
	// window and owedAt its instant.
	owed   *slot
	owedN  int64
	owedAt time.Time
}

// What start did with a window.
const (
	started  = iota // no run was in flight: the caller runs the window
	owed            // the window runs when the run in flight ends
	replaced        // as owed, where it replaced a window owed before, which is skipped
)

// start marks a run of s's window n, due at at, in flight, or owes it to the run in flight.
func (r *runState) start(s *slot, n int64, at time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		r.running = true
		return started
	}
	how := owed
	if r.owed != nil {
		how = replaced
	}
	r.owed, r.owedN, r.owedAt = s, n, at
	return how
}

// retarget has the window owed, if any, run as s, the check's slot in a configuration that
// replaced the one it was owed in (nil: the configuration dropped the check, and the window is
// not run): the configuration applied wins for every check that starts after it, where the
// owed window probed the address the replaced configuration gave, once.
func (r *runState) retarget(s *slot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owed != nil {
		r.owed = s
	}
}

// next ends the run in flight and returns the window owed meanwhile, which the caller runs, in
// flight from then (ok false: none, and no run is in flight).
func (r *runState) next() (s *slot, n int64, at time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owed == nil {
		r.running = false
		return nil, 0, time.Time{}, false
	}
	s, n, at = r.owed, r.owedN, r.owedAt
	r.owed = nil
	return s, n, at, true
}

// runFrom runs s's window n, then each window owed to the check meanwhile (runState), and lowers
// the in-flight group, which the dispatcher raised for it.
func (w *worker) runFrom(ctx context.Context, s *slot, n int64) {
	defer w.inflight.Done()
	timeout := s.t.Check.Timeout.D()
	for {
		w.run(ctx, s, n, timeout)
		var at time.Time
		var ok bool
		if s, n, at, ok = s.runs.next(); !ok {
			return
		}
		late := w.o.Clock.Now().Sub(at)
		if late > s.t.Check.Interval.D()/10 {
			w.late.Add(1)
		}
		timeout = owedTimeout(s.t.Check.Timeout.D(), s.t.Check.Interval.D(), late)
	}
}

// owedTimeout is the timeout of an owed window's check that starts late after its instant: it
// ends when it would have, had it started at its instant, as long as that takes no more than a
// tenth of the interval off its timeout (a late start the lag report tolerates). Given its whole
// timeout from when it started, against an endpoint that never answers, each check ended a
// moment after the one before (the check before's overrun, a millisecond or so): its results
// came later window after window, until a whole interval late, a window in two was then
// skipped, and the lag report blamed the prober's cpu for one hung endpoint. A start later than
// a tenth, which a jitter can make, is caught up a tenth a window, so that a slow endpoint's
// check keeps nine tenths of its timeout.
func owedTimeout(timeout, interval, late time.Duration) time.Duration {
	return timeout - min(max(late, 0), interval/10)
}

// execute runs one check of window n with timeout and publishes its result.
func (w *worker) execute(ctx context.Context, s *slot, n int64, timeout time.Duration) {
	if ctx.Err() != nil {
		return // shutdown came first (an owed window): a check cut short is no fact
	}
	o := timed(ctx, s.c, timeout, w.o.Clock.Now)
	if ctx.Err() != nil {
		return // cut short by shutdown: not a fact about the endpoint
	}
	r := events.ProbeResult{
		At:             w.o.Clock.Now().UTC(),
		App:            s.t.App,
		Pool:           s.t.Pool,
		Endpoint:       s.t.Endpoint,
		Address:        s.t.Address,
		Region:         w.o.Region,
		Prober:         w.o.Name,
		Check:          s.t.Check.Type,
		Window:         n,
		OK:             o.OK,
		LatencyMicros:  o.Latency.Microseconds(),
		ErrorClass:     o.Class,
		Error:          o.Err,
		HTTPStatus:     o.HTTPStatus,
		CertExpiryDays: o.CertExpiryDays,
	}
	result := "ok"
	if !o.OK {
		result = o.Class
	}
	s.series.Probe(result, o.Latency.Seconds())
	w.pub.publish(r)
}

// brokenChecker stands for a check that cannot be built; every run reports why.
type brokenChecker struct{ err error }

func (b brokenChecker) run(context.Context) Outcome { return failure(ClassError, b.err) }
