package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AsyncAckTimeout is how long a client made by NewJetStream awaits the answer to an asynchronous
// publish before it gives up on it.
const AsyncAckTimeout = 5 * time.Second

// NewJetStream is the JetStream client of a role. An asynchronous publish that is never answered
// (the stream's leader took it and died: measured, the publishes in flight when the leader of a
// stream was killed) is failed after AsyncAckTimeout and forgotten; nats.go's default keeps it
// waiting for ever, and once 4,000 wait, every publish of the client is refused until it
// reconnects. No role waits that long for an acknowledgement (the decider 500 ms, the controller
// 1 s), so only publishes no one waits for any more are given up on.
func NewJetStream(nc *nats.Conn, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	return jetstream.New(nc, append([]jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(AsyncAckTimeout)}, opts...)...)
}

// ErrConflict means another writer appended to the subject first: re-read it and decide again.
var ErrConflict = errors.New("subject changed since it was read")

// ErrPreempted means that an append was not stored because a message another writer stored on
// another subject of the stream holds its id: JetStream drops a message whose Nats-Msg-Id it
// stored within the duplicate window, whatever the subject, and acknowledges it as a duplicate.
// It wraps ErrConflict; append again under an id that writer cannot compute (IDKey).
var ErrPreempted = fmt.Errorf("its id is held by a message of another subject: %w", ErrConflict)

// Preempted returns an error wrapping ErrPreempted when ack, the acknowledgement of an append of
// e on subject, is a duplicate of a message that st stores on another subject; nil when it is
// not a duplicate, when the message is on subject (the same append, retried or by a replica),
// and when the message cannot be read (the acknowledgement then stands). The read is sent again
// while no copy has answered, as Last's is, and "no message found" is no answer: the leader
// acknowledged that sequence, and a replica behind it (cut from it, or slow) that has not
// stored the message yet says so; taken for an answer, the acknowledgement stood, about one read
// in three while a replica lagged.
func Preempted(ctx context.Context, st jetstream.Stream, subject string, e Envelope, ack *jetstream.PubAck) error {
	if ack == nil || !ack.Duplicate {
		return nil
	}
	m, err := ask(ctx, &reads, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		m, err := st.GetMsg(ctx, ack.Sequence)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, errBehind
		}
		return m, err
	})
	if err != nil || m.Subject == subject {
		return nil
	}
	return fmt.Errorf("append %s to %s: seq %d on %s: %w", e.Type, subject, ack.Sequence, m.Subject, ErrPreempted)
}

// JetStream's error codes for a failed expected-last-subject-sequence check (10164 on replicated
// streams), and for a message whose id another publisher is storing at this very moment (on
// replicated streams): both mean another writer got there first.
const (
	errCodeWrongLastSequence      = 10071
	errCodeWrongLastSequenceConst = 10164
	errCodeDuplicateInProcess     = 10158
)

// clusterBusy are JetStream's error codes for a cluster that cannot take a request now but will
// once an election ends or a node returns: the meta leader is being elected ("JetStream system
// temporarily unavailable", 10008), a stream's leader is not known (10009) or not yet sure of
// a subject's last sequence (10163), its Raft group failed the proposal (10041), the stream is
// offline (10118), too few peers are up to place it (10005), or not every server answered a
// listing (10004). Status 503 alone does not tell: JetStream answers it too for what holds
// until an operator acts, a stream full that discards new messages ("maximum messages
// exceeded", "maximum bytes exceeded", 10077), a server out of storage (10023), and those of
// untilOperator.
var clusterBusy = []int{10004, 10005, 10008, 10009, 10041, 10118, 10163}

// untilOperator are JetStream's error codes for a request it refuses until an operator acts:
// JetStream not enabled for the account (10039) or on the server (10076), a stream offline
// because a server does not support its definition or API level ("stream is offline: …",
// 10194, until that server is upgraded).
var untilOperator = []int{10039, 10076, 10194}

// Busy reports whether err is JetStream's answer that the cluster cannot take the request now,
// which trying again will change: one of clusterBusy, while a leader is elected or a node
// returns.
func Busy(err error) bool {
	return slices.Contains(clusterBusy, apiErrorCode(err))
}

// UntilOperator reports whether err is JetStream's answer that it refuses the request until an
// operator acts, one of untilOperator: trying again changes nothing until JetStream is enabled
// or the servers are upgraded.
func UntilOperator(err error) bool {
	return slices.Contains(untilOperator, apiErrorCode(err))
}

// Unanswered names the cluster's silence in err when err is a wait for its answer that ended
// after wait (a command's --timeout): alone, "context deadline exceeded" told an operator
// nothing of what to look at.
func Unanswered(wait time.Duration, err error) error {
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		return err
	}
	return fmt.Errorf("the NATS cluster did not answer within %s (loaded, partitioned, or JetStream without quorum): %w", wait, err)
}

func apiErrorCode(err error) int {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return int(apiErr.ErrorCode)
	}
	return 0
}

// Publish stores e on subject. The envelope id is sent as Nats-Msg-Id, so publishing the same
// event twice within the stream's duplicate window stores it once.
//
// When another publisher is storing the same event at the same moment (two replicas deriving one
// fact), Publish waits for that to settle and returns the duplicate's acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, e Envelope) (*jetstream.PubAck, error) {
	for attempt := 1; ; attempt++ {
		ack, err := js.PublishMsg(ctx, message(subject, e), jetstream.WithMsgID(e.ID))
		if err == nil {
			return ack, nil
		}
		if apiErrorCode(err) != errCodeDuplicateInProcess || attempt == 5 {
			return nil, fmt.Errorf("publish %s to %s: %w", e.Type, subject, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s to %s: %w", e.Type, subject, ctx.Err())
		case <-time.After(time.Duration(attempt) * time.Millisecond):
		}
	}
}

// PublishAsync starts storing e on subject as Publish does, without waiting for the
// acknowledgement: PublishResult waits for it. A writer of many events has them all in flight.
func PublishAsync(js jetstream.JetStream, subject string, e Envelope) (jetstream.PubAckFuture, error) {
	f, err := js.PublishMsgAsync(message(subject, e), jetstream.WithMsgID(e.ID))
	if err != nil {
		return nil, fmt.Errorf("publish %s to %s: %w", e.Type, subject, err)
	}
	return f, nil
}

// PublishResult waits for the outcome of a PublishAsync of e. An event another publisher was
// storing at the same moment is published again, as Publish does.
func PublishResult(ctx context.Context, js jetstream.JetStream, f jetstream.PubAckFuture, e Envelope) (*jetstream.PubAck, error) {
	subject := f.Msg().Subject
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		if apiErrorCode(err) == errCodeDuplicateInProcess {
			return Publish(ctx, js, subject, e)
		}
		return nil, fmt.Errorf("publish %s to %s: %w", e.Type, subject, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("publish %s to %s: %w", e.Type, subject, ctx.Err())
	}
}

// LastOf calls f, one call at a time, with the last event stored on each of subjects of stream
// that holds one, and its stream sequence; the reads run 16 at a time, each bounded by ctx or followProbe. It returns the
// first error met. Each read is answered by the stream's leader, not by a direct get: NATS hands
// a direct get to any replica, and one behind the leader (cut from it while the node the reader
// is connected to still reaches it) answers with what it holds, an older last message or none.
// A controller starting takes the route it reads for the one stored, and sends none where it
// computes the same: about one edge in three kept a later route, for as long as its app's state
// did not change. A replica that hangs delays no read: only the leader answers.
func LastOf(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, f func(subject string, seq uint64, e Envelope)) error {
	var mu sync.Mutex
	var first error
	next := make(chan string)
	var wg sync.WaitGroup
	for range min(16, len(subjects)) {
		wg.Go(func() {
			for subject := range next {
				e, seq, ok, err := LeaderLast(ctx, js, stream, subject)
				mu.Lock()
				switch {
				case err != nil && first == nil:
					first = err
				case err == nil && ok:
					f(subject, seq, e)
				}
				mu.Unlock()
			}
		})
	}
	for _, subject := range subjects {
		next <- subject
	}
	close(next)
	wg.Wait()
	return first
}

// LeaderLast returns the last event stored on subject of stream as the stream's leader holds it
// (JetStream's API message get, which only the leader answers), and its stream sequence; ok is
// false when the subject holds nothing. A message that does not decode is returned with ok and
// an error wrapping ErrMalformed, as Last does. Read so what must not be taken from a replica
// behind the leader (see LastOf): it answers with what it holds, an older last message or none.
// The read gives up when ctx ends (after followProbe for a ctx without a deadline).
func LeaderLast(ctx context.Context, js jetstream.JetStream, stream, subject string) (e Envelope, seq uint64, ok bool, err error) {
	if _, bounded := ctx.Deadline(); !bounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, followProbe)
		defer cancel()
	}
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, err)
	}
	m, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, err)
	}
	var r struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	switch err := json.Unmarshal(m.Data, &r); {
	case err != nil:
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, err)
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return Envelope{}, 0, false, nil
	case r.Error != nil:
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, r.Error)
	case r.Message == nil:
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, jetstream.ErrInvalidJetStreamResponse)
	}
	if e, err = Decode(r.Message.Data); err != nil {
		return Envelope{}, r.Message.Seq, true, fmt.Errorf("read last of %s (seq %d): %w", subject, r.Message.Seq, err)
	}
	return e, r.Message.Seq, true, nil
}

// Append stores e on subject only if the subject's last stored message is still lastSeq (0: the
// subject holds nothing yet). When another writer got there first it returns an error wrapping
// ErrConflict.
func Append(ctx context.Context, js jetstream.JetStream, subject string, e Envelope, lastSeq uint64) (*jetstream.PubAck, error) {
	ack, err := js.PublishMsg(ctx, message(subject, e),
		jetstream.WithMsgID(e.ID), jetstream.WithExpectLastSequencePerSubject(lastSeq))
	if err != nil {
		switch apiErrorCode(err) {
		case errCodeWrongLastSequence, errCodeWrongLastSequenceConst, errCodeDuplicateInProcess:
			return nil, fmt.Errorf("append %s to %s after seq %d: %w", e.Type, subject, lastSeq, ErrConflict)
		}
		return nil, fmt.Errorf("append %s to %s: %w", e.Type, subject, err)
	}
	return ack, nil
}

// AppendAsync starts storing e on subject as Append does, without waiting for the
// acknowledgement: AppendResult waits for it. Appends started one after another on one
// connection are stored in that order, so a writer can have many in flight and still append
// deterministically.
func AppendAsync(js jetstream.JetStream, subject string, e Envelope, lastSeq uint64) (jetstream.PubAckFuture, error) {
	f, err := js.PublishMsgAsync(message(subject, e), jetstream.WithMsgID(e.ID), jetstream.WithExpectLastSequencePerSubject(lastSeq))
	if err != nil {
		return nil, fmt.Errorf("append %s to %s: %w", e.Type, subject, err)
	}
	return f, nil
}

// AppendResult waits for the outcome of an AppendAsync of e: what Append would have returned.
// An outcome that has come is returned even when ctx has ended, so that a caller may collect
// what came without waiting (an ended ctx).
func AppendResult(ctx context.Context, f jetstream.PubAckFuture, e Envelope, lastSeq uint64) (*jetstream.PubAck, error) {
	subject := f.Msg().Subject
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, AppendError(subject, e, lastSeq, err)
	default:
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, AppendError(subject, e, lastSeq, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("append %s to %s: %w", e.Type, subject, ctx.Err())
	}
}

// AppendError is what AppendResult returns when the future of an AppendAsync of e to subject
// after lastSeq failed with err (received from its Err channel): an error wrapping ErrConflict
// when another writer got there first.
func AppendError(subject string, e Envelope, lastSeq uint64, err error) error {
	switch apiErrorCode(err) {
	case errCodeWrongLastSequence, errCodeWrongLastSequenceConst, errCodeDuplicateInProcess:
		return fmt.Errorf("append %s to %s after seq %d: %w", e.Type, subject, lastSeq, ErrConflict)
	}
	return fmt.Errorf("append %s to %s: %w", e.Type, subject, err)
}

// reads is the clock of the copies of Last's and Preempted's reads (see hedge): they share what
// they learn of the cluster's round trip, as a bridge's gets do. Each read started with none
// known, and asked again 50 and 100 ms after the first a cluster farther than that, or slowed
// by load: 20 reads of one 100 ms away asked it 58 times.
var reads hedge

// Hedged runs the direct get get as Last does: sent again while no copy has answered (see
// hedge), the first answer returned, given up when ctx ends (after followProbe for a ctx without
// a deadline). For a read that is no event (a key-value entry).
func Hedged[T any](ctx context.Context, get func(context.Context) (T, error)) (T, error) {
	return ask(ctx, &reads, get)
}

// Last returns the last event stored on subject and its stream sequence; ok is false when the
// subject holds nothing. The read is sent again while no copy has answered, as a bridge's are
// (see hedge), and gives up when ctx ends (after followProbe for a ctx without a deadline):
// NATS hands each direct get to a replica at random, even one whose node hangs, and a read
// that drew it waited for the caller's bound or nats.go's 5 s (the decider's loop 500 ms, each
// time). A replica behind the leader answers with what it holds, an older last message or none:
// a caller that appends after seq conflicts and reads again; one that must not take an older
// message for the last reads with LeaderLast or LastOf.
func Last(ctx context.Context, s jetstream.Stream, subject string) (e Envelope, seq uint64, ok bool, err error) {
	m, err := ask(ctx, &reads, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return s.GetLastMsgForSubject(ctx, subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Envelope{}, 0, false, nil
	}
	if err != nil {
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, err)
	}
	if e, err = Decode(m.Data); err != nil {
		return Envelope{}, m.Sequence, true, fmt.Errorf("read last of %s (seq %d): %w", subject, m.Sequence, err)
	}
	return e, m.Sequence, true, nil
}

// AnyLast returns the last event stored on subject of stream, as the first replica to answer a
// direct get holds it, and its stream sequence; ok is false when the subject holds nothing. It
// reads as Last does, sending the read again while no copy has answered, but needs neither a
// jetstream.Stream nor the stream's information, which only the leader gives: a role starting
// reads the active configuration so, and neither a hung replica nor a hung leader holds its
// start. A stream that does not exist (or allows no direct gets) gives nats.ErrNoResponders. A
// replica behind the leader answers with what it holds, an older last message or none.
func AnyLast(ctx context.Context, js jetstream.JetStream, stream, subject string) (e Envelope, seq uint64, ok bool, err error) {
	g, err := ask(ctx, &reads, func(ctx context.Context) (batchMsg, error) {
		return getLast(ctx, js.Conn(), stream, subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Envelope{}, 0, false, nil
	}
	if err != nil {
		return Envelope{}, 0, false, fmt.Errorf("read last of %s: %w", subject, err)
	}
	if e, err = Decode(g.m.Data); err != nil {
		return Envelope{}, g.m.Sequence, true, fmt.Errorf("read last of %s (seq %d): %w", subject, g.m.Sequence, err)
	}
	return e, g.m.Sequence, true, nil
}

// AnyAll returns every message of stream matching filter, oldest first, as the first replica to
// answer holds them: batched direct gets of up to bridgeBatch messages and about batchBytes
// each, sent again while no copy has answered as AnyLast's are, so that a history of up to
// bridgeBatch messages of a few KiB costs one round trip to the cluster, not one a message. It needs neither a consumer nor the stream's
// leader. Each batch's read gives up when ctx ends (after followProbe for a ctx without a
// deadline). A stream that holds none returns none; one that does not exist (or allows no direct
// gets) gives nats.ErrNoResponders. A replica behind the leader answers with what it holds, the
// messages up to an older last one.
func AnyAll(ctx context.Context, js jetstream.JetStream, stream, filter string) ([]*jetstream.RawStreamMsg, error) {
	var out []*jetstream.RawStreamMsg
	for from := uint64(1); ; {
		got, err := ask(ctx, &reads, func(ctx context.Context) ([]batchMsg, error) {
			return getBatch(ctx, js.Conn(), stream, filter, from, nil, bridgeBatch, batchBytes)
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", filter, stream, err)
		}
		for _, g := range got {
			out = append(out, g.m)
		}
		if len(got) == 0 || got[len(got)-1].pending == 0 {
			return out, nil
		}
		from = got[len(got)-1].m.Sequence + 1
	}
}

// multiLast is how many subjects one of AnyLastOf's direct gets asks for: a server answers no
// more than 1,024 messages to one.
const multiLast = 1024

// multiLastAsks is how many of AnyLastOf's lists of subjects are read at once: up to
// multiLastAsks × multiLastBytes in flight, well within the 64 MiB a server sends a connection
// ahead of what it has read.
const multiLastAsks = 8

// multiLastBytes is about how much one page of AnyLastOf's reads holds: its multiLastAsks reads
// at once hold about one bridge's batch (batchBytes), so that a copy sent before the first
// reply came, whose reply then crosses the link for nothing, holds the others up briefly.
const multiLastBytes = batchBytes / multiLastAsks

// AnyLastOf calls f, one call at a time and in the order of subjects, with the last event stored
// on each of subjects of stream that holds one, and its stream sequence, as the first replica to
// answer holds them: direct gets of the last messages of up to multiLast subjects each (multi_last,
// nats-server 2.11 or later), multiLastAsks of them at once, each read on from where it stopped
// at about multiLastBytes and sent again while no copy has answered, as AnyAll's are, so that the
// last events of 10,000 subjects cost a few round trips to the cluster, not 10,000; a server
// that refuses multi_last (one older than 2.11) is asked for each subject's alone. Each read
// gives up when ctx ends (after followProbe for a ctx without a deadline). A message that does
// not decode is left out, as one the subject does not hold. It returns the first error met,
// having called f with what was read. A replica behind the leader answers with what it holds,
// an older last message or none.
func AnyLastOf(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, f func(subject string, seq uint64, e Envelope)) error {
	at := make(map[string]int, len(subjects))
	for i, subject := range subjects {
		at[subject] = i
	}
	found := make([]*jetstream.RawStreamMsg, len(subjects))
	var mu sync.Mutex
	var first error
	fl := &flow{}
	slots := make(chan struct{}, multiLastAsks)
	var wg sync.WaitGroup
	for start := 0; start < len(subjects) && ctx.Err() == nil; start += multiLast {
		list := subjects[start:min(start+multiLast, len(subjects))]
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			err := lastOfList(ctx, js.Conn(), stream, list, fl, func(m *jetstream.RawStreamMsg) {
				mu.Lock()
				defer mu.Unlock()
				// A page read on from where the one before stopped may give a subject again,
				// stored there since.
				if i, ok := at[m.Subject]; ok && (found[i] == nil || m.Sequence > found[i].Sequence) {
					found[i] = m
				}
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = fmt.Errorf("read last of %d subjects of %s: %w", len(list), stream, err)
			}
		})
	}
	wg.Wait()
	for i, m := range found {
		if m == nil {
			continue
		}
		if e, err := Decode(m.Data); err == nil {
			f(subjects[i], m.Sequence, e)
		}
	}
	return first
}

// multiLastBehind is how many times AnyLastOf reads a list of subjects again from its first page
// when a page is answered by a replica behind the one that answered the page before.
const multiLastBehind = 8

// lastOfList reads the last message of each of subjects (at most multiLast) for AnyLastOf, page by
// page, and gives each to found. A page answered by a replica behind the one that answered the
// page before (errBehind) would leave out a subject that both hold: the list is read again from
// its first page, up to multiLastBehind times.
func lastOfList(ctx context.Context, nc *nats.Conn, stream string, subjects []string, fl *flow, found func(*jetstream.RawStreamMsg)) error {
	var from, held uint64
	for behind := 0; ; {
		at, after := from, held // the copies still running as the next page is asked read these
		p, err := fl.ask(ctx, &reads, func(ctx context.Context) (page, error) {
			return getMulti(ctx, nc, stream, subjects, at, after, multiLastBytes, fl.answered)
		})
		if errors.Is(err, errBehind) && behind < multiLastBehind {
			behind++
			from, held = 0, 0
			continue
		}
		got := p.msgs
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if refused := (statusError{}); errors.As(err, &refused) {
			return lastOfEach(ctx, nc, stream, subjects, found)
		}
		if err != nil {
			return err
		}
		for _, g := range got {
			found(g.m)
		}
		if len(got) == 0 || got[len(got)-1].pending == 0 {
			return nil
		}
		from, held = got[len(got)-1].m.Sequence+1, p.held
	}
}

// flow tells AnyLastOf's reads, which share one connection, when a reply to any of them last
// came. Their pages (multiLastAsks × batchBytes at once before) come through a link of a few
// MiB a second (a replica a site away) one after another, in longer than followProbe: given up
// after followProbe, each read failed while its reply was still coming, and was sent again
// every bridgeHedge meanwhile, each copy another page the server queued on the same connection
// (past its max_pending, it cuts the connection as a slow consumer's).
type flow struct {
	// last is when a reply last came, in Unix nanoseconds.
	last atomic.Int64
}

// answered notes that a reply came.
func (fl *flow) answered() { fl.last.Store(time.Now().UnixNano()) }

// quiet reports whether no reply came for d.
func (fl *flow) quiet(d time.Duration) bool {
	return time.Since(time.Unix(0, fl.last.Load())) >= d
}

// ask is ask for AnyLastOf's reads: a copy is sent again only while no reply to any of them
// came for h.after() (the link is idle: a replica does not answer), and, for a ctx without a
// deadline, the read is given up once none came for followProbe, not followProbe after it was
// sent.
func (fl *flow) ask(ctx context.Context, h *hedge, get func(context.Context) (page, error)) (page, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fl.answered() // sent now: followProbe counts from here
	var idle <-chan time.Time
	if _, bounded := ctx.Deadline(); !bounded {
		t := time.NewTicker(followProbe / 4)
		defer t.Stop()
		idle = t.C
	}
	answers, send := copies(ctx, h, get)
	send()
	again := time.NewTimer(h.after())
	defer again.Stop()
	for {
		select {
		case a := <-answers:
			if a.ended() {
				continue // this copy's wait ended with the ask's: the case below says so
			}
			return a.m, a.err
		case <-again.C:
			if fl.quiet(h.after()) {
				send()
			}
			again.Reset(h.after())
		case <-idle:
			if fl.quiet(followProbe) {
				cancel(context.DeadlineExceeded)
			}
		case <-ctx.Done():
			return page{}, context.Cause(ctx)
		}
	}
}

// lastOfEach reads the last message of each of subjects by a direct get of its own, one after
// another, for lastOfList when the server refuses multi_last (one older than 2.11): slower, but
// what a role read before, where giving none would have a decider ignore an override in force.
func lastOfEach(ctx context.Context, nc *nats.Conn, stream string, subjects []string, found func(*jetstream.RawStreamMsg)) error {
	for _, subject := range subjects {
		g, err := ask(ctx, &reads, func(ctx context.Context) (batchMsg, error) {
			return getLast(ctx, nc, stream, subject)
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read last of %s: %w", subject, err)
		}
		found(g.m)
	}
	return nil
}

func message(subject string, e Envelope) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = e.Encode()
	m.Header.Set("Detour-Type", e.Type)
	return m
}
