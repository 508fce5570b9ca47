package alert

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure the alert sender.
type Options struct {
	// JS reaches STATE (followed) and ALERTS (where attempts are recorded).
	JS jetstream.JetStream
	// Config holds the alert groups.
	Config *config.Config
	// Name is the source of the attempt events, e.g. "controller-1".
	Name string
	Log  zerolog.Logger
	// Client sends the deliveries. Default: a client with no redirects followed.
	Client *http.Client
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration
	// Backoff is the wait after the first failed attempt; it doubles up to MaxBackoff.
	// Defaults 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

type runner struct {
	o       Options
	log     zerolog.Logger
	secrets map[*config.Webhook]string
	wg      sync.WaitGroup
	slots   chan struct{}
	// attempts stores the delivery attempts on ALERTS beside the deliveries.
	attempts *events.Recorder
}

// maxInFlight bounds the deliveries retrying at once.
const maxInFlight = 256

// Run follows STATE (and DRILLS, when a group is told about drill_result) and delivers the
// alerts of every event appended after it started, until ctx ends; then it returns nil. It
// returns an error at once when a webhook's secret cannot be read.
func Run(ctx context.Context, o Options) error {
	if o.JS == nil || o.Config == nil || o.Name == "" {
		return errors.New("alert options: JS, Config and Name are required")
	}
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &runner{o: o, log: o.Log.With().Str("component", "alerts").Logger(), slots: make(chan struct{}, maxInFlight)}
	r.attempts = events.NewRecorder(o.JS, r.log)
	var err error
	if r.secrets, err = Secrets(o.Config); err != nil {
		return err
	}
	if len(o.Config.Alerts) == 0 {
		<-ctx.Done()
		return nil
	}
	// At a cluster's start STATE may not exist yet (the controller creates it meanwhile): wait
	// for it rather than leave the controller without alerts.
	st, err := events.WaitStream(ctx, o.JS, events.StreamState, r.log)
	if err != nil {
		return nil // ctx ended first
	}
	stateSeq := st.CachedInfo().State.LastSeq
	drillSeq := uint64(0)
	wantDrills := slices.ContainsFunc(o.Config.Alerts, func(a config.Alert) bool { return slices.Contains(a.On, config.AlertDrillResult) })
	if wantDrills {
		// Without DRILLS yet (a role started with --config before any apply), every drill
		// event is new: follow retries until the stream exists.
		if drillSeq, err = lastSeq(ctx, o.JS, events.StreamDrills, r.log); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	view := state.NewView()
	r.log.Info().Int("groups", len(o.Config.Alerts)).Uint64("state_seq", stateSeq).Msg("alerts started")
	var followers sync.WaitGroup
	followers.Go(func() { r.attempts.Run(ctx) })
	if wantDrills {
		seen := drills{}
		followers.Add(1)
		go func() {
			defer followers.Done()
			r.follow(ctx, events.StreamDrills, events.SubjectDrills, func(subject string, seq uint64, data []byte) {
				if e, err := events.Decode(data); err == nil {
					if fact, ok := seen.Classify(subject, e); ok && seq > drillSeq {
						r.dispatch(ctx, fact)
					}
				}
			}, func() { seen, drillSeq = drills{}, 0 })
		}()
	}
	r.follow(ctx, events.StreamState, events.SubjectState, func(subject string, seq uint64, data []byte) {
		if e, err := events.Decode(data); err == nil {
			if fact, ok := Classify(o.Config, view, subject, seq, e); ok && seq > stateSeq {
				r.dispatch(ctx, fact)
			}
		}
	}, func() { view.Reset(); stateSeq = 0 })
	followers.Wait()
	r.wg.Wait()
	return nil
}

// lastSeq is the sequence of the last message in stream: alerts are about what comes after it.
// While the stream does not answer (only its leader does, and it elects one for 4 to 9 s after
// the JetStream node leading it died; or NATS is away) it asks again every half second, saying
// so once: the process this sender is part of (a controller) must not stop for it. It returns
// an error wrapping jetstream.ErrStreamNotFound at once, and ctx's error when ctx ends.
func lastSeq(ctx context.Context, js jetstream.JetStream, stream string, log zerolog.Logger) (uint64, error) {
	warned := false
	for {
		seq, err := readLastSeq(ctx, js, stream)
		switch {
		case err == nil:
			if warned {
				log.Info().Str("stream", stream).Msg("stream answers; alerts start")
			}
			return seq, nil
		case errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil:
			return 0, err
		case !warned:
			log.Warn().Err(err).Str("stream", stream).Msg("stream does not answer; alerts wait for it")
			warned = true
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// readLastSeq asks once, for at most a second, for the sequence of stream's last message.
func readLastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("run alerts: open stream %s: %w", stream, err)
	}
	return st.CachedInfo().State.LastSeq, nil // opening it read its state
}

// follow hands every message of stream on subject to handle, in order, until ctx ends, through
// an events.Follower: it resumes after the last one handled when the consumer fails. When the
// stream was deleted and created again, recreated is called before anything of the new stream
// is handled: every event of that one is new, and alerted.
func (r *runner) follow(ctx context.Context, stream, subject string, handle func(subject string, seq uint64, data []byte), recreated func()) {
	f := events.Follower{JS: r.o.JS, Stream: stream, Log: r.log, Reader: "alerts", Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}}
	f.Run(ctx, func(d events.Delivery) {
		if d.Recreated {
			recreated()
		}
		if d.Msg != nil {
			handle(d.Subject, d.Seq, d.Data)
		}
	})
}

// dispatch starts a delivery to every webhook of every group fact matches.
func (r *runner) dispatch(ctx context.Context, fact Fact) {
	for i := range r.o.Config.Alerts {
		a := &r.o.Config.Alerts[i]
		kind := Matches(a, fact)
		if kind == "" {
			continue
		}
		for j := range a.Webhooks {
			w := &a.Webhooks[j]
			body, err := Body(a, *w, kind, fact)
			if err != nil {
				r.log.Error().Err(err).Str("alert", a.Name).Msg("alert not built")
				continue
			}
			d := &delivery{group: a, hook: *w, secret: r.secrets[w], kind: kind, fact: fact, body: body,
				id: events.DerivedID(fact.Event.ID, a.Name+"|"+w.URL)}
			select {
			case r.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { <-r.slots }()
				r.deliver(ctx, d)
			}()
		}
	}
}

// Secrets reads every webhook's signing secret, so that one that cannot be read stops a role at
// start, not at its first alert.
func Secrets(c *config.Config) (map[*config.Webhook]string, error) {
	out := map[*config.Webhook]string{}
	for i := range c.Alerts {
		a := &c.Alerts[i]
		for j := range a.Webhooks {
			s, err := a.Webhooks[j].Key()
			if err != nil {
				return nil, fmt.Errorf("alerts[%d].webhooks[%d]: %w", i, j, err)
			}
			out[&a.Webhooks[j]] = s
		}
	}
	return out, nil
}
