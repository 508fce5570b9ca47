package dnsupdater

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/detourdev/detour/dnsupdater/push"
	"github.com/detourdev/detour/events/config"
)

// pusher is the pusher of one zone and the push configuration it was made with. Once started,
// stop ends its Run, and done is closed when Run has returned.
type pusher struct {
	*push.Pusher
	conf config.Push
	stop context.CancelFunc
	done chan struct{}
}

// makePushers returns a pusher for each zone of c that has a push configuration: the one of
// running when that zone's configuration is the same, or differs only in retry_interval or
// marker (which runPushers then changes in place, see push.Pusher.Tune), else a new one, not
// started. Its error names the zone's field at fault, never the secret.
func (s *Server) makePushers(c *config.Config, running map[string]*pusher) (map[string]*pusher, error) {
	out := map[string]*pusher{}
	for i, z := range c.Zones {
		if z.Push == nil {
			continue
		}
		if p := running[z.Name]; p != nil && p.conf == *z.Push {
			out[z.Name] = p
			continue
		} else if p != nil && tunable(p.conf, *z.Push) {
			out[z.Name] = &pusher{Pusher: p.Pusher, conf: *z.Push, stop: p.stop, done: p.done}
			continue
		}
		p, err := push.New(push.Options{Zone: z.Name, Push: *z.Push, CredentialDirs: s.o.CredentialDirs, JS: s.o.JS, Source: s.o.Name,
			Listen: s.o.Addr, Writer: s.writer, Log: s.o.Log, Metrics: s.o.Metrics, Live: s.liveState})
		if err != nil {
			return nil, fmt.Errorf("zones[%d].%w", i, err)
		}
		out[z.Name] = &pusher{Pusher: p, conf: *z.Push}
	}
	return out, nil
}

// tunable reports whether a push configuration becomes b by changing only its retry_interval or
// its marker, which a running pusher takes in place.
func tunable(a, b config.Push) bool {
	a.RetryInterval, a.Marker = b.RetryInterval, b.Marker
	return a == b
}

// runPushers makes next the pushers in force: it changes in place each running pusher that next
// holds with another retry_interval or marker; it stops every running pusher next does not hold
// (a zone whose push a reload removed or changed otherwise) and waits for it, so that no update of the
// configuration before leaves after the first of the new one; then it starts, under ctx, each
// pusher of next not started yet, and returns their zones, sorted.
func (s *Server) runPushers(ctx context.Context, next map[string]*pusher) []string {
	s.pushMu.Lock()
	before := s.pushers
	s.pushers = next
	s.pushMu.Unlock()
	for name, p := range before {
		if n := next[name]; n != nil && n != p && n.Pusher == p.Pusher {
			n.Tune(n.conf.RetryInterval, n.conf.Marker)
			s.log.Info().Str("zone", name).Str("server", n.conf.Server).Stringer("retry_interval", n.conf.RetryInterval.D()).
				Str("marker", n.conf.Marker).Msg("zone push changed in place")
			continue
		}
		if next[name] != p && p.stop != nil {
			p.stop()
			<-p.done
			s.log.Info().Str("zone", name).Str("server", p.conf.Server).Msg("zone push stopped")
		}
	}
	var started []string
	for name, p := range next {
		if p.stop != nil {
			continue
		}
		// A pusher that replaces one of the same primary (its key changed) empties the names
		// the one before pushed there and this version no longer owns.
		if old := before[name]; old != nil && old.stop != nil && old.conf.Server == p.conf.Server {
			p.Inherit(old.Pusher)
		}
		var pctx context.Context
		pctx, p.stop = context.WithCancel(ctx)
		p.done = make(chan struct{})
		s.pushRuns.Go(func() {
			defer close(p.done)
			p.Run(pctx)
		})
		s.log.Info().Str("zone", name).Str("server", p.conf.Server).Msg("zone push started")
		started = append(started, name)
	}
	slices.Sort(started)
	return started
}

// pusherOf returns the pusher of the zone named name, nil when it has none.
func (s *Server) pusherOf(name string) *pusher {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return s.pushers[name]
}

// pushing reports whether any zone has a pusher.
func (s *Server) pushing() bool {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return len(s.pushers) > 0
}

// runningPushers returns the pushers in force, for a reload to keep those it does not change.
func (s *Server) runningPushers() map[string]*pusher {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	return maps.Clone(s.pushers)
}
