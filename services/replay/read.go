package replay

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Window is the part of the history to read.
type Window struct {
	// From is the earliest stored time read from PROBES, DNS and ROUTES; zero reads from the
	// start. STATE and DRILLS are always read from their start: they are small, and what-if needs
	// the statuses recorded and the drills in force before the window.
	From time.Time
	// To is the latest stored time read; zero reads up to what the streams held when reading
	// began. STATE is read up to that in any case: a transition is stored a moment after its
	// time (the result's that completed it), and one dated at To is in the window; so are DNS
	// and ROUTES for the answers and route tables caused by what STATE holds up to To, whose
	// phases they are.
	To time.Time
	// Config also reads CONFIG from its start up to To: the configuration versions a what-if
	// follows.
	Config bool
}

// chunkSize is how many PROBES messages one decoding task holds.
const chunkSize = 512

// Read calls fn with every record of w in the order the streams stored them (by stored time;
// a probe result before another stream's event stored at the same instant, since it may have
// caused it). Records of PROBES are decoded by several goroutines beside the reader.
func Read(ctx context.Context, js jetstream.JetStream, w Window, fn func(*Record)) error {
	var small []Record
	// inWindow are the STATE events dated up to w.To, and those they caused: the answers and
	// route tables they caused, stored after w.To, are read for their phases.
	inWindow := map[string]bool{}
	for _, name := range w.small() {
		from, to := w.From, w.To
		if name == events.StreamState || name == events.StreamDrills || name == events.StreamConfig {
			from = time.Time{}
		}
		phases := name == events.StreamDNS || name == events.StreamRoutes
		if name == events.StreamState || phases {
			to = time.Time{}
		}
		err := readStream(ctx, js, name, from, to, func(m rawMsg) {
			rec := Record{Stream: name, Seq: m.seq, Subject: m.subject, Stored: m.stored}
			rec.Env, rec.Err = events.Decode(m.data)
			if !w.To.IsZero() && name == events.StreamState && rec.Err == nil && (!rec.Env.Time.After(w.To) || inWindow[rec.Env.Cause]) {
				inWindow[rec.Env.ID] = true
			}
			if phases && !w.To.IsZero() && m.stored.After(w.To) && (rec.Err != nil || !inWindow[rec.Env.Cause]) {
				return // after the window, and no phase of what happened in it
			}
			small = append(small, rec)
		})
		if err != nil {
			return err
		}
	}
	slices.SortStableFunc(small, func(a, b Record) int { return a.Stored.Compare(b.Stored) })
	next := 0
	flush := func(before time.Time) {
		for ; next < len(small) && small[next].Stored.Before(before); next++ {
			fn(&small[next])
		}
	}
	err := readProbes(ctx, js, w, func(r *Record) {
		flush(r.Stored)
		fn(r)
	})
	if err != nil {
		return err
	}
	flush(time.Unix(1<<40, 0))
	return nil
}

// small are the streams of w that Read holds in memory to merge with PROBES.
func (w Window) small() []string {
	names := []string{events.StreamState, events.StreamDNS, events.StreamRoutes, events.StreamDrills}
	if w.Config {
		names = append(names, events.StreamConfig)
	}
	return names
}

// Gap is a stream that discarded messages a window reads: its oldest went at its bounds
// (PROBES' at streams.probes' max_age or max_bytes).
type Gap struct {
	Stream string
	// Oldest is when the oldest message the stream still holds was stored; when it holds none,
	// when it was asked.
	Oldest time.Time
}

// Holds returns the gaps of the streams Read reads for w: those that no longer hold what they
// stored from w.From on (zero: from their start), having discarded messages and holding none
// stored before it; and the servers' time when PROBES was asked (zero without PROBES).
func Holds(ctx context.Context, js jetstream.JetStream, w Window) (gaps []Gap, probesAt time.Time, err error) {
	for _, name := range append(w.small(), events.StreamProbes) {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("read %s: %w", name, err)
		}
		info := s.CachedInfo()
		if name == events.StreamProbes {
			probesAt = info.TimeStamp
		}
		// Discarded are the messages stored before the oldest held; when it holds none, those up
		// to the last stored, and none of the window when that came before it.
		oldest, lost := info.State.FirstTime, info.State.FirstSeq > 1
		if info.State.Msgs == 0 {
			oldest, lost = info.TimeStamp, lost && (w.From.IsZero() || !info.State.LastTime.Before(w.From))
		}
		if lost && (w.From.IsZero() || oldest.After(w.From)) {
			gaps = append(gaps, Gap{Stream: name, Oldest: oldest})
		}
	}
	return gaps, probesAt, nil
}

type rawMsg struct {
	subject string
	data    []byte
	seq     uint64
	stored  time.Time
}

// readStream calls fn with each message of the stream stored from from (zero: its start) up to
// to (zero: its last message when reading began).
func readStream(ctx context.Context, js jetstream.JetStream, name string, from, to time.Time, fn func(rawMsg)) error {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if !from.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending == 0 {
		return nil
	}
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s: %w", name, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		if !to.IsZero() && meta.Timestamp.After(to) {
			return nil
		}
		fn(rawMsg{subject: msg.Subject(), data: msg.Data(), seq: meta.Sequence.Stream, stored: meta.Timestamp})
		if meta.Sequence.Stream >= last || meta.NumPending == 0 {
			return nil
		}
	}
}

// chunk is a run of PROBES messages decoded by one worker; done is closed when it is.
type chunk struct {
	msgs []rawMsg
	recs []Record
	done chan struct{}
}

// readProbes reads PROBES and calls fn with each decoded record, in stream order, while
// GOMAXPROCS workers decode the chunks ahead of it.
func readProbes(ctx context.Context, js jetstream.JetStream, w Window, fn func(*Record)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *chunk, 64)
	ordered := make(chan *chunk, 64)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			names := map[string]string{}
			for c := range work {
				c.recs = make([]Record, len(c.msgs))
				for i, m := range c.msgs {
					c.recs[i] = Record{Stream: events.StreamProbes, Seq: m.seq, Subject: m.subject, Stored: m.stored}
					c.recs[i].Results, c.recs[i].Err = events.DecodeProbesNamed(m.data, names)
				}
				close(c.done)
			}
		})
	}
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		cur := &chunk{done: make(chan struct{})}
		send := func() bool {
			select {
			case work <- cur:
			case <-ctx.Done():
				return false
			}
			select {
			case ordered <- cur:
			case <-ctx.Done():
				return false
			}
			cur = &chunk{done: make(chan struct{})}
			return true
		}
		readErr = readStream(ctx, js, events.StreamProbes, w.From, w.To, func(m rawMsg) {
			cur.msgs = append(cur.msgs, m)
			if len(cur.msgs) == chunkSize {
				send()
			}
		})
		if len(cur.msgs) > 0 {
			send()
		}
	}()
	for c := range ordered {
		<-c.done
		for i := range c.recs {
			fn(&c.recs[i])
		}
	}
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	return ctx.Err()
}
