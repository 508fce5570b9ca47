package proxy

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// heartbeat publishes the edge's heartbeat once per configured interval, on core NATS, until
// ctx is done. A heartbeat that cannot be sent is dropped: the next one is on its way. The apps
// whose listeners are bound go in the first heartbeat and in each one after they changed (an
// edge of 10,000 apps would otherwise send 100 KB a heartbeat that nothing reads). A new
// interval (setInterval) applies at once: the next heartbeat leaves then and announces it, and
// the others follow at the new interval.
func (e *edge) heartbeat(ctx context.Context, js jetstream.JetStream) {
	interval := e.cfg.Heartbeat.Interval.D()
	started := time.Now().UTC()
	subject := events.HeartbeatSubject(e.name)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	var sent []string // the apps of the last heartbeat sent that carried them
	first, failing := true, false
	for {
		seq++
		e.mu.RLock()
		var apps []string
		if first || !sameApps(e.order, sent) {
			apps = make([]string, 0, len(e.order))
			for _, a := range e.order {
				apps = append(apps, a.name)
			}
		}
		e.mu.RUnlock()
		env, err := events.New(events.TypeEdgeHeartbeat, "edge/"+e.name, time.Now(), events.Heartbeat{
			Edge: e.name, Region: e.cfg.Region, Seq: seq, Started: started,
			IntervalMS: interval.Milliseconds(), Apps: apps,
		})
		if err == nil {
			err = js.Conn().Publish(subject, env.Encode())
		}
		if err == nil && apps != nil {
			first, sent = false, apps
		}
		switch {
		case err != nil && !failing:
			e.log.Warn().Str("subject", subject).Err(err).Msg("heartbeat not sent")
		case err == nil && failing:
			e.log.Info().Str("subject", subject).Msg("heartbeats sent again")
		}
		failing = err != nil
		for wait := true; wait; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				wait = false
			case d := <-e.intervals:
				if d != interval {
					e.log.Info().Dur("from", interval).Dur("to", d).Msg("heartbeat interval changed")
					interval, wait = d, false
					tick.Reset(d)
				}
			}
		}
	}
}

// setInterval has the heartbeats sent every d from now on. Only the last interval set counts:
// one the heartbeat loop has not taken yet is replaced.
func (e *edge) setInterval(d time.Duration) {
	for {
		select {
		case e.intervals <- d:
			return
		default:
		}
		select {
		case <-e.intervals:
		default:
		}
	}
}

// sameApps reports whether order lists the apps named in names, in that order.
func sameApps(order []*app, names []string) bool {
	if len(order) != len(names) {
		return false
	}
	for i, a := range order {
		if a.name != names[i] {
			return false
		}
	}
	return true
}
