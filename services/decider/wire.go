package decider

import (
	"context"
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// wireGrace is how long a probe message seen on the wire waits for PROBES to deliver it before
// the decider folds it from the wire. PROBES normally delivers within milliseconds; it stops
// while its Raft group elects a new leader (4 to 9 s after a JetStream node dies) or while the
// decider replaces a consumer that lived on the dead node.
const wireGrace = 300 * time.Millisecond

// wireBuffer bounds the messages heard on the wire and not yet handled by the decider's loop;
// beyond it they are dropped (PROBES still has them).
const wireBuffer = 4096

// heardMsg is one probe message heard on a core NATS subscription to PROBES' subjects: the
// probers publish to JetStream, so the decider hears each one whether or not PROBES has a leader
// to store it.
type heardMsg struct {
	key  msgKey
	data []byte
	at   time.Time // this host's clock
	// n numbers the messages kept waiting, in the order heard (decider.heardCount).
	n uint64
}

// msgKey matches a message heard on the wire to PROBES' delivery of it: its subject and its
// Nats-Msg-Id. The id alone would let a message on one region's subject stand in for another
// region's message under the same id, and drop it.
type msgKey struct{ subject, id string }

// listen subscribes to the probe subjects the decider folds, events.EndpointProbeSubjects
// (endpoints' batches and results published alone; not the edge listeners' batches, which the
// controller follows), and hands what it hears to out, in the order heard, dropping a message
// when out is full. A message without a Nats-Msg-Id is left to PROBES. It returns stop, which
// stops it, and sync, which returns once every message the connection had received when it was
// called is in out (or dropped): the connection receives a result published before an override
// ahead of STATE's delivery of the override, but the listener may still hold it when the loop
// takes that delivery.
func listen(js jetstream.JetStream, out chan<- heardMsg) (stop, sync func(), err error) {
	msgs := make(chan *nats.Msg, wireBuffer)
	done, syncs := make(chan struct{}), make(chan chan struct{})
	sub, err := js.Conn().ChanSubscribe(events.EndpointProbeSubjects, msgs)
	if err != nil {
		return nil, nil, fmt.Errorf("listen to %s: %w", events.EndpointProbeSubjects, err)
	}
	stop = func() {
		_ = sub.Unsubscribe()
		close(done)
	}
	sync = func() {
		synced := make(chan struct{})
		select {
		case syncs <- synced:
			<-synced
		case <-done:
		}
	}
	handOn := func(m *nats.Msg) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if id == "" {
			return
		}
		select {
		case out <- heardMsg{key: msgKey{m.Subject, id}, data: m.Data, at: time.Now()}:
		default:
		}
	}
	go func() {
		for {
			select {
			case m := <-msgs:
				handOn(m)
			case synced := <-syncs:
				for len(msgs) > 0 {
					handOn(<-msgs)
				}
				close(synced)
			case <-done:
				return
			}
		}
	}()
	return stop, sync, nil
}

// heard keeps a message heard on the wire until PROBES delivers it (then it is dropped) or its
// grace ends (then tick folds it). Before the decider is live it is dropped: the backlog of
// PROBES is read first, and covers it.
func (d *decider) heard(m heardMsg) {
	if !d.live {
		return
	}
	if _, ok := d.early[m.key]; ok {
		delete(d.early, m.key) // PROBES delivered it first
		return
	}
	if d.waiting == nil {
		d.waiting = map[msgKey]heardMsg{}
	}
	if _, ok := d.waiting[m.key]; !ok {
		d.heardCount++
		m.n = d.heardCount
		d.waiting[m.key] = m
		d.waitOrder = append(d.waitOrder, m.key)
	}
}

// hearQueued takes, as heard, every message waiting in ch, which only the loop reads; with all,
// first every message the connection received by now (see listen's sync), for an event that
// waits for the results heard before it (hold).
func (d *decider) hearQueued(ch <-chan heardMsg, all bool) {
	if all && d.live && d.wireSync != nil {
		d.wireSync()
	}
	for len(ch) > 0 {
		d.heard(<-ch)
	}
}

// delivered notes that PROBES delivered the message k: its copy heard on the wire is not
// needed. The loop may take the copy after the delivery (both wait at once after a busy
// moment): k is then remembered, among the last wireBuffer, so that the copy is dropped as it
// comes instead of waiting wireGrace to be decoded and found folded already.
func (d *decider) delivered(k msgKey) {
	if d.fromWire {
		d.fromWire = false
		d.log.Info().Msg("PROBES delivers again; results are folded as it delivers them")
	}
	if k.id == "" || !d.live {
		return
	}
	if _, ok := d.waiting[k]; ok {
		delete(d.waiting, k)
		return
	}
	if d.early == nil {
		d.early, d.earlyRing = map[msgKey]struct{}{}, make([]msgKey, wireBuffer)
	}
	delete(d.early, d.earlyRing[d.earlyNext])
	d.earlyRing[d.earlyNext] = k
	d.earlyNext = (d.earlyNext + 1) % len(d.earlyRing)
	d.early[k] = struct{}{}
}

// foldHeard folds the messages heard on the wire whose grace ended at local without PROBES
// delivering them, each timed by when it was heard, on the streams' clock. While PROBES
// deliveries wait for the loop (backlog), PROBES is not what is late: the copies keep waiting
// for it, as folding them from the wire would only add their decoding to the loop's delay.
//
// The wait order is taken from the front one message at a time: releasing an override takes off
// it the messages PROBES delivered (heardFolded), up to the one being folded.
func (d *decider) foldHeard(ctx context.Context, local time.Time, backlog bool) {
	for len(d.waitOrder) > 0 {
		k := d.waitOrder[0]
		m, ok := d.waiting[k]
		if ok && (backlog || local.Sub(m.at) < wireGrace) {
			break
		}
		if ok && len(d.held) > 0 {
			d.releaseOverrides(ctx, time.Time{}) // those STATE delivered before m was heard
		}
		d.waitOrder = d.waitOrder[1:]
		if !ok {
			continue // delivered by PROBES
		}
		delete(d.waiting, k)
		rs, err := events.DecodeProbes(m.data)
		region := probeRegion(m.key.subject)
		if err != nil || d.drills.Region(region) {
			continue // PROBES counts what is malformed, if it ever delivers it
		}
		before := d.o.Stats.Results.Load()
		d.fold(ctx, rs, d.streamNow(m.at), region, true)
		folded := d.o.Stats.Results.Load() - before
		d.o.Stats.Heard.Add(folded)
		if folded > 0 && !d.fromWire {
			d.fromWire = true
			d.log.Warn().Dur("grace", wireGrace).Str("subject", m.key.subject).
				Msg("PROBES did not deliver a result in time; folding results as heard on the wire")
		}
	}
	if len(d.waitOrder) == 0 {
		d.waitOrder = nil // let the backing array go after a burst
	}
}
