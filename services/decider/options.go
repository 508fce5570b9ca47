package decider

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure one decider replica.
type Options struct {
	// JS is the JetStream client; the PROBES and STATE streams must exist.
	JS jetstream.JetStream
	// Config is the defaulted, valid configuration whose endpoints are decided.
	Config *config.Config
	// Name identifies this replica as the source of the events it appends, e.g. "decider/a";
	// unique among the replicas, or their counts of the transitions appended can overlap.
	Name string
	// Log receives the transitions (info) and failures; a "component" field is added.
	Log zerolog.Logger
	// Now is this host's clock: it dates the replay window and measures the time passing between
	// deliveries (results are timed by when the stream stored them). Default time.Now.
	Now func() time.Time
	// Ticks drive staleness, hold-down deadlines and retries of failed appends. Default: a ticker
	// every TickEvery.
	Ticks <-chan time.Time
	// TickEvery is the period of the default ticker. Default: a quarter of the shortest check
	// interval, between 10ms and 1s, of each configuration version from the moment the decider
	// applies it.
	TickEvery time.Duration
	// Replay is how far back in PROBES a starting decider reads: enough for every region to have
	// reported fall or rise results, and to know which regions are stale. Default: the largest,
	// over the apps, of stale_after and max(fall, rise) × interval + jitter, of each configuration
	// version from the moment the decider applies it (a hold-down is recorded once it has lasted
	// half of it).
	Replay time.Duration
	// Stats, when set, receives the decider's counters.
	Stats *Stats
	// Metrics, when set, counts transitions, failover times, lag and decode failures.
	Metrics *metrics.Metrics
	// Configs, when set, delivers later configurations: each is decided from its arrival on,
	// endpoints that stay keeping their state.
	Configs <-chan *config.Config
}

// Stats are a decider's counters, safe to read while it runs.
type Stats struct {
	// Messages are the PROBES messages processed (folded and their transitions appended);
	// Results the probe results folded.
	Messages, Results atomic.Uint64
	// StateSeq is the last STATE stream sequence applied.
	StateSeq atomic.Uint64
	// Malformed counts messages that are no probe event; Unknown the results naming an app, pool
	// or endpoint the configuration does not have.
	Malformed, Unknown atomic.Uint64
	// Unexpected counts the STATE events seen live that did not fit their subject or what STATE
	// recorded there before (forged or foreign); Reasserted the times this replica appended its
	// own view over a status STATE recorded against it.
	Unexpected, Reasserted atomic.Uint64
	// Heard counts the results folded as heard on the wire, because PROBES did not deliver them
	// within wireGrace (its leader died, or this replica's consumer with it).
	Heard atomic.Uint64
	// Foreign counts the results dropped for their region: one the configuration does not list
	// under regions, or a payload region other than the region token of the result's subject.
	Foreign atomic.Uint64
	// Transitions and PoolTransitions count the events this replica appended to STATE, each
	// once STATE is known to hold it as this replica's: by its acknowledgement, or by the STATE
	// reader delivering it when the acknowledgement was lost (see events.Sent).
	Transitions, PoolTransitions atomic.Uint64
	// Conflicts counts appends another writer got to first; Failed the appends that failed
	// otherwise (NATS unreachable) and wait for the next tick.
	Conflicts, Failed atomic.Uint64
	// Live is true once the decider has rebuilt its state from the streams and decides.
	Live atomic.Bool
}

func (o *Options) defaults() error {
	switch {
	case o.JS == nil:
		return errors.New("decider options: JS is required")
	case o.Config == nil:
		return errors.New("decider options: Config is required")
	case o.Name == "":
		return errors.New("decider options: Name is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	return nil
}

// replay is how far back in PROBES a decider starting under cfg reads: Replay when set, else
// the largest, over cfg's apps, of stale_after and max(fall, rise) × interval + jitter.
func (o *Options) replay(cfg *config.Config) time.Duration {
	if o.Replay > 0 {
		return o.Replay
	}
	return defaultReplay(cfg)
}

// defaultReplay is the largest, over cfg's apps, of stale_after and max(fall, rise) × interval +
// jitter.
func defaultReplay(cfg *config.Config) time.Duration {
	replay := time.Duration(0)
	for i := range cfg.Apps {
		k := &cfg.Apps[i].Check
		replay = max(replay, k.StaleAfter.D(), time.Duration(max(k.Fall, k.Rise))*k.Interval.D()+k.Jitter.D())
	}
	return replay
}

// tickEvery is the default ticker's period under cfg: TickEvery when set, else a quarter of the
// shortest check interval of cfg's apps, between 10ms and 1s.
func (o *Options) tickEvery(cfg *config.Config) time.Duration {
	if o.TickEvery > 0 {
		return o.TickEvery
	}
	shortest := time.Duration(0)
	for i := range cfg.Apps {
		if iv := cfg.Apps[i].Check.Interval.D(); shortest == 0 || iv < shortest {
			shortest = iv
		}
	}
	return min(max(shortest/4, 10*time.Millisecond), time.Second)
}
