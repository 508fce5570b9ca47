package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Window is the part of the history to read.
type Window struct {
	// From is the earliest stored time read; zero reads from the start. Of STATE and DRILLS, what
	// the what-if needs from before it is read too, one message a subject: each endpoint's last
	// transition, the overrides in force and the last transitions of pools and edges (which the
	// window's answers and route tables may name as their cause), and every event of the drills
	// not yet scored. CONFIG is read from its start (it keeps the last versions alone).
	From time.Time
	// To is the latest stored time read; zero reads up to what the streams held when reading
	// began. STATE is read for phaseGrace past it: a transition is stored a moment after its
	// time (the result's that completed it), and one dated at To is in the window; so are DNS
	// and ROUTES for the answers and route tables caused by what STATE holds up to To, whose
	// phases they are.
	To time.Time
	// Config also reads CONFIG from its start up to To: the configuration versions a what-if
	// follows.
	Config bool
	// Wait bounds each wait for the servers' answer: to a request, or for the next message of a
	// stream read (0: DefaultWait). A read takes as long as it needs while messages come.
	Wait time.Duration
}

// DefaultWait is a Window's Wait when it sets none: `detour replay --timeout`'s default.
const DefaultWait = 30 * time.Second

// wait is w.Wait, or DefaultWait.
func (w Window) wait() time.Duration { return cmp.Or(w.Wait, DefaultWait) }

// phaseGrace is how long after a window's end STATE, DNS and ROUTES are read for what the
// window's transitions caused: the pools' transitions, answers and route tables, which follow
// within a second, or once a DNS server or controller cut from NATS is back.
var phaseGrace = 10 * time.Minute

// chunkSize is how many PROBES messages one decoding task holds.
const chunkSize = 512

// Read calls fn with every record of w in the order the streams stored them (by stored time;
// a probe result before another stream's event stored at the same instant, since it may have
// caused it). Records of PROBES are decoded by several goroutines beside the reader.
func Read(ctx context.Context, js jetstream.JetStream, w Window, fn func(*Record)) error {
	st, err := look(ctx, js, w.names(), !w.From.IsZero(), w.wait())
	if err != nil {
		return err
	}
	return read(ctx, js, w, st, nil, fn)
}

// read is Read over the streams st describes; config, unless nil, are the records of CONFIG up
// to w.To, read already.
func read(ctx context.Context, js jetstream.JetStream, w Window, st streams, config []Record, fn func(*Record)) error {
	var small []Record
	// inWindow are the STATE events dated up to w.To, and those they caused: the answers and
	// route tables they caused, stored after w.To, are read for their phases.
	inWindow := map[string]bool{}
	for _, name := range w.small() {
		if name == events.StreamConfig && config != nil {
			small = append(small, config...)
			continue
		}
		from, to := w.From, w.To
		if name == events.StreamConfig {
			from = time.Time{}
		}
		phases := name == events.StreamDNS || name == events.StreamRoutes
		if (name == events.StreamState || phases) && !to.IsZero() {
			to = to.Add(phaseGrace)
		}
		add := func(m rawMsg) {
			rec := Record{Stream: name, Seq: m.seq, Subject: m.subject, Stored: m.stored}
			rec.Env, rec.Err = events.Decode(m.data)
			if !w.To.IsZero() && name == events.StreamState && rec.Err == nil && (!rec.Env.Time.After(w.To) || inWindow[rec.Env.Cause]) {
				inWindow[rec.Env.ID] = true
			}
			if phases && !w.To.IsZero() && m.stored.After(w.To) && (rec.Err != nil || !inWindow[rec.Env.Cause]) {
				return // after the window, and no phase of what happened in it
			}
			small = append(small, rec)
		}
		if !from.IsZero() && (name == events.StreamState || name == events.StreamDrills) {
			if err := readBefore(ctx, js, st[name], from, w.wait(), add); err != nil {
				return err
			}
		}
		if err := readStream(ctx, js, st[name], nil, from, to, w.wait(), add); err != nil {
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
	err := readProbes(ctx, js, w, st[events.StreamProbes], func(r *Record) {
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

// names are the streams Read reads for w.
func (w Window) names() []string { return append(w.small(), events.StreamProbes) }

// streams holds what the servers said of each stream a replay reads when it began (a stream
// that does not exist is absent): its state, and, for STATE and DRILLS when a window has a
// start, the subjects it holds.
type streams map[string]*jetstream.StreamInfo

// bySubject are the streams whose last message of each subject before a window is read.
var bySubject = map[string]string{events.StreamState: events.SubjectState, events.StreamDrills: events.SubjectDrills}

// look asks the servers once about each of names, waiting up to wait for each answer; with
// subjects, it lists the subjects of the streams read by subject before a window.
func look(ctx context.Context, js jetstream.JetStream, names []string, subjects bool, wait time.Duration) (streams, error) {
	st := streams{}
	for _, name := range names {
		filter := ""
		if subjects {
			filter = bySubject[name]
		}
		info, err := streamInfo(ctx, js, name, filter, wait)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, events.Unanswered(wait, err))
		}
		st[name] = info
	}
	return st, nil
}

// streamInfo asks for name's information, with the subjects matching filter (none when empty)
// page by page, each answer waited for up to wait.
func streamInfo(ctx context.Context, js jetstream.JetStream, name, filter string, wait time.Duration) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	for offset := 0; ; {
		req, err := json.Marshal(struct {
			Filter string `json:"subjects_filter,omitempty"`
			Offset int    `json:"offset,omitempty"`
		}{filter, offset})
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		m, err := js.Conn().RequestWithContext(rctx, "$JS.API.STREAM.INFO."+name, req)
		cancel()
		if err != nil {
			return nil, err
		}
		var r struct {
			jetstream.StreamInfo
			Error *jetstream.APIError `json:"error"`
			Total int                 `json:"total"`
		}
		switch err := json.Unmarshal(m.Data, &r); {
		case err != nil:
			return nil, err
		case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
			return nil, jetstream.ErrStreamNotFound
		case r.Error != nil:
			return nil, r.Error
		}
		if info == nil {
			info = &r.StreamInfo
		} else {
			maps.Copy(info.State.Subjects, r.State.Subjects)
		}
		offset += len(r.State.Subjects)
		if len(r.State.Subjects) == 0 || offset >= r.Total {
			return info, nil
		}
	}
}

// Gap is a stream that discarded messages a window reads: its oldest went at its bounds
// (PROBES' at streams.probes' max_age or max_bytes).
type Gap struct {
	Stream string
	// Oldest is when the oldest message the stream still holds was stored; when it holds none,
	// when it was asked.
	Oldest time.Time
}

// holds returns the gaps of the streams st describes for w: those that no longer hold what they
// stored from w.From on (zero: from their start), having discarded messages and holding none
// stored before it.
func holds(st streams, w Window) (gaps []Gap) {
	for _, name := range w.names() {
		info := st[name]
		if info == nil {
			continue
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
	return gaps
}

type rawMsg struct {
	subject string
	data    []byte
	seq     uint64
	stored  time.Time
}

// readBefore calls fn, in stream order, with what a window opening at from needs of the
// subjects info lists stored before it: the last message of each, and, of DRILLS, every message
// of each drill whose last is not its scorecard (a drill in force, or whose rollback or
// scorecard may come in the window, needs its start and steps). A stream that answers no
// multi_last, whose replica does not answer one within wait (a hung node's), or whose replicas
// answer behind its leader, gives every message stored before from (readAllBefore).
func readBefore(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo, from time.Time, wait time.Duration, fn func(rawMsg)) error {
	if info == nil || len(info.State.Subjects) == 0 {
		return nil
	}
	name := info.Config.Name
	subjects := slices.Sorted(maps.Keys(info.State.Subjects))
	if name == events.StreamDrills {
		// An app's claim puts no failure in force and shows on no timeline.
		subjects = slices.DeleteFunc(subjects, func(s string) bool { return len(events.SplitSubject(s, "detour.drill")) != 1 })
	}
	var last []rawMsg
	held, err := heldBefore(ctx, js, info, from, wait)
	// A stream electing a leader (a replica cut from it calls elections) answers that it is busy
	// meanwhile: it is asked again for up to wait.
	for pause, until := 100*time.Millisecond, time.Now().Add(wait); events.Busy(err) && time.Now().Before(until); pause = min(2*pause, 2*time.Second) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		held, err = heldBefore(ctx, js, info, from, wait)
	}
	if err == nil {
		for range behindTries {
			if last, err = lastBefore(ctx, js, name, subjects, from, held, info.State.FirstSeq, wait); !errors.Is(err, errBehind) {
				break
			}
		}
	}
	var refused *jetstream.APIError // a server that takes no start_time (older than 2.11)
	if errors.Is(err, errNoMultiLast) || errors.Is(err, errBehind) || errors.As(err, &refused) && !events.Busy(err) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// Read as before multi_last: every message before the window.
		return readAllBefore(ctx, js, info, from, held, wait, fn)
	}
	if err != nil {
		return fmt.Errorf("read %s before %s: %w", name, from.UTC().Format(stamp), events.Unanswered(wait, err))
	}
	if name != events.StreamDrills {
		for _, m := range last {
			fn(m)
		}
		return nil
	}
	var drills []string
	for _, m := range last {
		if e, err := events.Decode(m.data); err != nil || e.Type != events.TypeDrillScored {
			drills = append(drills, m.subject)
		}
	}
	if len(drills) == 0 {
		return nil
	}
	return readStream(ctx, js, info, drills, time.Time{}, from.Add(-time.Nanosecond), wait, fn)
}

// readAllBefore calls fn with every message of the stream info describes stored before from.
// Its consumer may be placed on any replica, one behind the leader included, whose read ends
// at the last message it holds: a read ending before held, the leader's last message before
// from (0: unknown), is read again on another consumer, up to behindTries times.
func readAllBefore(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo, from time.Time, held uint64, wait time.Duration, fn func(rawMsg)) error {
	for range behindTries {
		var got []rawMsg
		if err := readStream(ctx, js, info, nil, time.Time{}, from.Add(-time.Nanosecond), wait, func(m rawMsg) { got = append(got, m) }); err != nil {
			return err
		}
		if held < info.State.FirstSeq || len(got) > 0 && got[len(got)-1].seq >= held {
			for _, m := range got {
				fn(m)
			}
			return nil
		}
	}
	return fmt.Errorf("read %s before %s: %w", info.Config.Name, from.UTC().Format(stamp), errBehind)
}

// multiLast is how many subjects one direct get asks the last message of: a server answers no
// more than 1,024.
const multiLast = 1024

// behindTries is how many times readBefore asks the replicas (one drawn at random each time)
// while the one answering is behind the leader, before it reads every message from a consumer,
// and how many consumers it reads that way.
const behindTries = 5

// errBehind is a direct get answered by a replica that does not hold every message the leader
// stored before the window (one cut from it): its last messages are older than the leader's.
var errBehind = errors.New("answered by a replica behind the leader")

// heldBefore returns the sequence of the last message the leader of the stream info describes
// stored before at (0: none): the one before its first stored at or after at, or, when it
// stored none since, its last when info was asked. Only the leader answers it.
func heldBefore(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo, at time.Time, wait time.Duration) (uint64, error) {
	req, err := json.Marshal(struct {
		Start time.Time `json:"start_time"`
	}{at})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+info.Config.Name, req)
	if err != nil {
		return 0, err
	}
	var r struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	switch err := json.Unmarshal(m.Data, &r); {
	case err != nil:
		return 0, err
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return info.State.LastSeq, nil
	case r.Error != nil:
		return 0, r.Error
	case r.Message == nil || r.Message.Seq == 0:
		return 0, jetstream.ErrInvalidJetStreamResponse
	}
	return r.Message.Seq - 1, nil
}

// lastBefore returns the last message of each of subjects of stream stored before at, in
// stream order: direct gets of up to multiLast subjects each (multi_last with up_to_time,
// nats-server 2.11 or later, else errNoMultiLast), each read on from where its answer stopped,
// and waited for up to wait. An answer from a replica that holds less than held, the leader's
// last message before at, is errBehind; so is one finding none where the leader holds messages
// before at (held at or past first, its first sequence), which no replica tells from a list of
// subjects all stored since.
func lastBefore(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, at time.Time, held, first uint64, wait time.Duration) ([]rawMsg, error) {
	var out []rawMsg
	for len(subjects) > 0 {
		list := subjects[:min(multiLast, len(subjects))]
		subjects = subjects[len(list):]
		for seq := uint64(0); ; {
			req, err := json.Marshal(struct {
				Seq  uint64    `json:"seq,omitempty"`
				Last []string  `json:"multi_last"`
				Upto time.Time `json:"up_to_time"`
			}{seq, list, at})
			if err != nil {
				return nil, err
			}
			dctx, cancel := context.WithTimeout(ctx, wait)
			got, more, upTo, err := directGet(dctx, js.Conn(), stream, req, len(list))
			cancel()
			if err != nil {
				return nil, err
			}
			if upTo < held && (upTo > 0 || held >= first) {
				return nil, errBehind
			}
			out = append(out, got...)
			if !more || len(got) == 0 {
				break
			}
			seq = got[len(got)-1].seq + 1
		}
	}
	slices.SortFunc(out, func(a, b rawMsg) int { return cmp.Compare(a.seq, b.seq) })
	return out, nil
}

// errNoMultiLast is a stream that answers no multi_last direct get: one that allows no direct
// gets (503, no responders), or a server older than 2.11 (408, "Empty Request").
var errNoMultiLast = errors.New("no multi_last direct gets")

// directGet sends req, a batched direct get of up to n messages, to stream and returns the
// messages answered, whether more matched than the answer held, and the last sequence the
// answer covered (0 for none found, or an answer that does not say it).
func directGet(ctx context.Context, nc *nats.Conn, stream string, req []byte, n int) (out []rawMsg, more bool, upTo uint64, err error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, false, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return nil, false, 0, err
	}
	for len(out) <= n {
		r, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, false, 0, errNoMultiLast
		}
		if err != nil {
			return nil, false, 0, err
		}
		if r.Header.Get("Status") == "408" && len(r.Data) == 0 && r.Header.Get(jetstream.SequenceHeader) == "" {
			return nil, false, 0, errNoMultiLast
		}
		m, pending, end, err := events.ParseDirectGet(r.Header, r.Data)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && len(out) == 0:
			return nil, false, 0, nil // none stored before
		case err != nil:
			return nil, false, 0, err
		case end:
			upTo, _ := strconv.ParseUint(r.Header.Get("Nats-UpTo-Sequence"), 10, 64)
			return out, pending > 0, upTo, nil
		}
		out = append(out, rawMsg{subject: m.Subject, data: m.Data, seq: m.Sequence, stored: m.Time})
	}
	return nil, false, 0, fmt.Errorf("more than the %d messages asked for", n)
}

// readStream calls fn with each message of the stream info describes (of subjects, unless
// nil) stored from from (zero: its start) up to to (zero: its last message when info was
// asked), waiting up to wait for the consumer and for each message.
func readStream(ctx context.Context, js jetstream.JetStream, info *jetstream.StreamInfo, subjects []string, from, to time.Time, wait time.Duration, fn func(rawMsg)) error {
	if info == nil || info.State.Msgs == 0 {
		return nil
	}
	name, last := info.Config.Name, info.State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubjects: subjects}
	if !from.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &from
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	cons, err := js.OrderedConsumer(cctx, name, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", name, events.Unanswered(wait, err))
	}
	// The consumer goes with the read, not 5 minutes later (nats.go's inactive threshold): a
	// script replaying in a loop filled a stream's or an account's consumer limit.
	defer deleteConsumer(ctx, js, name, cons, wait)
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
		msg, err := it.Next(jetstream.NextMaxWait(wait))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s: %w", name, events.Unanswered(wait, err))
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

// deleteConsumer deletes the consumer cons is reading stream with, once its read ended, even
// one ended by ctx (an operator's Ctrl-C). A consumer the server no longer holds, or one it
// does not answer for within wait, is left to its inactive threshold.
func deleteConsumer(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer, wait time.Duration) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}

// chunk is a run of PROBES messages decoded by one worker; done is closed when it is.
type chunk struct {
	msgs []rawMsg
	recs []Record
	done chan struct{}
}

// readProbes reads PROBES and calls fn with each decoded record, in stream order, while
// GOMAXPROCS workers decode the chunks ahead of it.
func readProbes(ctx context.Context, js jetstream.JetStream, w Window, info *jetstream.StreamInfo, fn func(*Record)) error {
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
		readErr = readStream(ctx, js, info, nil, w.From, w.To, w.wait(), func(m rawMsg) {
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
