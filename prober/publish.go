package prober

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher stores results in the PROBES stream: one message per result, or, with a batch
// window, the results completed within each window as batch messages: one of the endpoints'
// results and one of the edge listeners' (which the controller follows apart).
type publisher struct {
	js     jetstream.JetStream
	region string
	prober string
	source string
	window time.Duration
	clock  Clock

	// With a window, results wait in queued, in the order they completed, for the batcher. A
	// check wakes the batcher only when it waits for a first result or when the results queued
	// fill a batch it holds: while a window is open the batcher sleeps until it ends, where a
	// channel woke it for every result (a goroutine made ready, often an idle thread woken to
	// run it).
	mu     sync.Mutex
	room   *sync.Cond // signalled when the batcher takes what is queued
	queued []events.ProbeResult
	idle   bool // the batcher waits for a result, with no window open
	// fill is how many queued results fill the fuller of the batches the batcher holds.
	fill int
	wake chan struct{} // capacity 1

	done   chan struct{}
	failed atomic.Int64 // results JetStream did not store
}

// newPublisher returns a publisher; with a positive window, batches must run.
func newPublisher(js jetstream.JetStream, region, prober string, window time.Duration, clock Clock) *publisher {
	p := &publisher{js: js, region: region, prober: prober, source: "prober/" + region + "/" + prober,
		window: window, clock: clock, fill: maxBatch, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.room = sync.NewCond(&p.mu)
	return p
}

// maxQueued bounds the results waiting for the batcher; a check that completes beyond it waits.
const maxQueued = 4096

func (p *publisher) publish(c events.ProbeResult) {
	if p.window <= 0 {
		p.single(c)
		return
	}
	p.mu.Lock()
	for len(p.queued) >= maxQueued {
		p.room.Wait()
	}
	p.queued = append(p.queued, c)
	wake := p.idle || len(p.queued) == p.fill
	p.idle = false
	p.mu.Unlock()
	if wake {
		select {
		case p.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// A message's id, its envelope's and its Nats-Msg-Id, is a UUIDv7 drawn for it: JetStream drops
// a message whose id it stored within PROBES' duplicate window whatever its subject, so an id
// that another region's prober could compute ahead would let it publish under it first, on its
// own subjects, and have this result dropped. The id is set once on the message, so that a
// retry of the same publish is still a duplicate. A check that two probers of a region ran in
// one window (a hand-over) is stored twice and counted once by its window (ProbeResult.Window).

// single sends r alone, on its endpoint's subject.
func (p *publisher) single(r events.ProbeResult) {
	u, err := uuid.NewV7()
	if err != nil {
		p.failed.Add(1)
		return
	}
	r.ID = u.String()
	data := appendEnvelope(make([]byte, 0, 512), events.TypeProbeCompleted, r.ID, p.source, r.At,
		func(b []byte) []byte { return appendResult(b, &r) })
	p.send(events.ProbeSubject(r.Region, r.App, r.Pool, r.Endpoint), events.TypeProbeCompleted, r.ID, data, 1)
}

func (p *publisher) send(subject, typ, id string, data []byte, results int) {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set("Detour-Type", typ)
	if _, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(id)); err != nil {
		p.failed.Add(int64(results))
	}
}

// take returns the results queued since the last take, in their order, and reuses spare for
// the next ones; sleeping tells publish to wake the batcher for the next result, and fill at
// how many queued results a batch it holds is full.
func (p *publisher) take(spare []events.ProbeResult, sleeping bool, fill int) []events.ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.queued
	p.queued = spare[:0]
	if len(got) > 0 {
		p.room.Broadcast()
	}
	p.idle = sleeping && len(got) == 0
	p.fill = fill
	return got
}

// batches runs in batch mode. A result that arrives when nothing was sent for a window goes out
// at once; the results arriving within the window after a send are gathered and sent together
// when it ends (endpoints' and edge listeners' in a message each; a lone endpoint result on its
// own subject, a lone edge-listener result in a batch of one, which the deciders do not read). Latency stays at zero for a
// quiet worker and under one window for a busy one.
func (p *publisher) batches(ctx context.Context) {
	defer close(p.done)
	var endpoints, edges, got []events.ProbeResult
	var timer <-chan time.Time
	stop := func() bool { return false }
	var last time.Time // when the last message went out
	flush := func() {
		stop()
		timer = nil
		p.sendAll(endpoints, events.ProbeBatchSubject(p.region, p.prober))
		if len(edges) > 0 {
			// Even one: alone, on its own subject, it would reach the deciders' filter.
			p.batch(edges, events.EdgeProbeBatchSubject(p.region, p.prober))
		}
		clear(endpoints)
		clear(edges)
		endpoints, edges = endpoints[:0], edges[:0]
		last = p.clock.Now()
	}
	add := func(c events.ProbeResult) {
		full := false
		if c.Pool == events.EdgeProbePool {
			edges = append(edges, c)
			full = len(edges) >= maxBatch
		} else {
			endpoints = append(endpoints, c)
			full = len(endpoints) >= maxBatch
		}
		if full { // a batch PROBES takes (maxBatch)
			flush()
		}
	}
	// gather adds the results queued since the last look.
	gather := func() {
		got = p.take(got, false, maxBatch) // flushed next: it holds none
		for _, c := range got {
			add(c)
		}
		clear(got)
	}
	for {
		// Look at what came; sleep only when nothing did.
		if got = p.take(got, timer == nil, maxBatch-max(len(endpoints), len(edges))); len(got) > 0 {
			for _, c := range got {
				if timer == nil {
					now := p.clock.Now()
					if now.Sub(last) >= p.window {
						p.single(c)
						last = now
						continue
					}
					timer, stop = p.clock.NewTimer(last.Add(p.window).Sub(now))
				}
				add(c)
			}
			clear(got)
			continue
		}
		select {
		case <-p.wake:
		case <-timer:
			gather() // what completed up to the window's end goes with it
			flush()
		case <-ctx.Done():
			gather()
			flush()
			return
		}
	}
}

// sendAll sends the endpoint results gathered: alone on its own subject, or as a batch on
// subject.
func (p *publisher) sendAll(cs []events.ProbeResult, subject string) {
	switch len(cs) {
	case 0:
	case 1:
		p.single(cs[0])
	default:
		p.batch(cs, subject)
	}
}

// maxBatch keeps a batch message well under events.MaxProbeMessage, PROBES' bound on one
// message (a result takes 300 to 700 bytes).
const maxBatch = 500

func (p *publisher) batch(cs []events.ProbeResult, subject string) {
	u, err := uuid.NewV7()
	if err != nil {
		p.failed.Add(int64(len(cs)))
		return
	}
	id := u.String()
	rs := make([]events.ProbeResult, len(cs))
	last := cs[0].At
	for i, c := range cs {
		rs[i] = c
		rs[i].ID = id + "/" + strconv.Itoa(i)
		if c.At.After(last) {
			last = c.At
		}
	}
	data := appendEnvelope(make([]byte, 0, 400*len(rs)+256), events.TypeProbeBatchCompleted, id, p.source, last,
		func(b []byte) []byte { return appendBatch(b, p.region, p.prober, rs) })
	p.send(subject, events.TypeProbeBatchCompleted, id, data, len(rs))
}

// flush waits until JetStream acknowledged everything published, or ctx ends.
func (p *publisher) flush(ctx context.Context) {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
	}
}
