package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bridgePoll is how often a bridge asks for the next message once it has read all there was.
const bridgePoll = 200 * time.Millisecond

// bridgeHedge is the shortest a bridge waits for the answer to a direct get before it sends the
// same request again (see hedge).
const bridgeHedge = 50 * time.Millisecond

// bridgeAsks is how many subjects a BridgeLast bridge asks for at once.
const bridgeAsks = 8

// bridge reads a stream by direct gets while a follower has no consumer, from whichever replica
// answers (see Bridge).
type bridge struct {
	cancel context.CancelFunc
	done   chan struct{}
	// read counts the messages its direct gets returned.
	read atomic.Int64
}

// bridge starts reading the stream as mode says, after the last message delivered, until stop.
// It starts nothing (and stop is a no-op) for BridgeNone, for a stream found not to allow
// direct gets, or, for BridgeNext, when it follows more than one filter subject or, before it
// first caught up, when its Start begins where a direct get cannot ask for (directStart); how
// says which, for the follower's log ("" for BridgeNone), or "direct gets" when it started.
//
// It needs neither a consumer nor the stream's leader, nor the stream's information (which
// only the leader gives): a follower started while the stream has no leader, or the cluster no
// quorum, reads what the replicas left hold. One that has not caught up since its start catches
// up through the bridge: a BridgeLast bridge reads the last message of each subject, which is
// what its consumer would have delivered, and a BridgeNext one reads every message from the
// stream's first on (the last alone where it follows the last message of one subject), or from
// the first stored at its Start's time, or from its Start's sequence (see next), each with the
// count of those still to come (Delivery.Pending), so that a handler waiting for the end of the
// backlog waits as it does for a consumer's, and is told CaughtUp at the end. It reads nothing
// while JetStream says the stream does not exist (followState.gone).
func (st *followState) bridge(ctx context.Context, mode Bridge, lastOf func() []string, handle func(Delivery)) (b *bridge, how string) {
	st.mu.Lock()
	s, caught := st.stream, st.caught
	st.mu.Unlock()
	switch {
	case mode == BridgeNone:
		return nil, ""
	case s != nil && !s.CachedInfo().Config.AllowDirect:
		return nil, "none: stream does not allow direct gets"
	case mode == BridgeNext && len(st.cfg.FilterSubjects) != 1:
		return nil, "none: more than one filter subject"
	case mode == BridgeNext && !caught && !directStart(st.cfg):
		return nil, "none: not caught up since start, which is neither the stream's first message, a time nor a sequence"
	case mode == BridgeLast && lastOf == nil:
		return nil, "none: no subjects listed"
	}
	var subjects []string
	if mode == BridgeLast {
		subjects = lastOf()
	}
	ctx, cancel := context.WithCancel(ctx)
	b = &bridge{cancel: cancel, done: make(chan struct{})}
	h := &hedge{}
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			if mode == BridgeNext {
				if st.next(ctx, h, handle, b) {
					continue
				}
			} else {
				st.lastRound(ctx, h, subjects, handle, b)
			}
			t := time.NewTimer(bridgePoll)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}()
	return b, "direct gets"
}

// lastRound reads the last message of each of subjects and delivers those it has not, up to
// bridgeAsks subjects at once, so that a round takes about as long as one ask whatever the
// number of subjects; after a round in which every subject answered, it delivers CaughtUp
// (deliver drops it once the follower caught up).
func (st *followState) lastRound(ctx context.Context, h *hedge, subjects []string, handle func(Delivery), b *bridge) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, bridgeAsks)
	// unanswered counts the subjects whose ask ended without an answer: until a round has none,
	// a follower that never caught up has not.
	var unanswered atomic.Int64
	st.mu.Lock()
	gone, epoch := st.gone, st.epoch
	st.mu.Unlock()
	if gone {
		return
	}
	for _, subject := range subjects {
		if ctx.Err() != nil {
			break
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			g, err := ask(ctx, h, func(ctx context.Context) (batchMsg, error) {
				return getLast(ctx, st.nc, st.streamName, subject)
			})
			switch {
			case err == nil:
				b.read.Add(1)
				st.bridgeDeliver(epoch, g.delivery(st.streamName, 0), handle)
			case !errors.Is(err, jetstream.ErrMsgNotFound):
				unanswered.Add(1)
			}
		})
	}
	wg.Wait()
	if ctx.Err() == nil && unanswered.Load() == 0 {
		st.bridgeDeliver(epoch, Delivery{CaughtUp: true}, handle)
	}
}

// isCaught reports whether the follower caught up since its start.
func (st *followState) isCaught() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.caught
}

// directStart reports whether a consumer started with cfg begins where a direct get can ask
// for, so that a bridge can read in its place before the follower first caught up: at the
// stream's first message (all of it, or the last message of each subject: every message from the
// first, folded in order, ends where the last of each subject does), at the first stored at a
// time (the decider's PROBES), which a direct get asks for by the time, or at a sequence (a
// role's configuration watch, after the version it started on), which a direct get asks for as
// it asks for the one after the last delivered.
func directStart(cfg jetstream.OrderedConsumerConfig) bool {
	switch cfg.DeliverPolicy {
	case jetstream.DeliverAllPolicy, jetstream.DeliverLastPerSubjectPolicy, jetstream.DeliverByStartSequencePolicy:
		return true
	case jetstream.DeliverByStartTimePolicy:
		return cfg.OptStartTime != nil
	}
	return false
}

// directGet starts the subjects of direct gets, under the JetStream API prefix every role uses
// (NewJetStream).
const directGet = "$JS.API.DIRECT.GET."

// bridgeBatch is how many messages a BridgeNext bridge asks for in one direct get.
const bridgeBatch = 256

// batchBytes bounds the bytes of one batched direct get (its last message may pass it), a
// bridge's and AnyAll's: every copy of a read is answered whole, and a server sends a connection
// no more than max_pending (64 MiB by default) ahead of what it has read. Unbounded, a batch was
// cut at max_pending, and a stream of large messages (CONFIG keeps up to 128 MiB, DNS and ROUTES
// messages of up to 1 MiB) had the server send its copies 64 MiB each and cut the reader off as
// a slow consumer. 4 MiB is a few copies in flight on a link 1 s away, and 100 messages of
// 40 KiB in one round trip.
const batchBytes = 4 << 20

// next reads the messages after the last one delivered (before any was, from the first stored at
// its Start's time, or from its Start's sequence, for a follower that starts at one; the last
// message of its one subject alone, for a follower of the last message per subject whose filter
// has no wildcard), up to bridgeBatch of them, and delivers them, each with the count of those
// the stream held beyond it (Delivery.Pending) and CaughtUp on the one with none; when there is
// none after the last one delivered, it delivers CaughtUp alone (deliver drops both once the
// follower caught up). Neither comes before the message at followState.target: a replica cut
// from the leader answers with what it held then. A server that does not batch gives no count:
// a message then counts one more to come until the follower caught up, none after.
// It reports whether it read any message (the bridge then asks again at once).
func (st *followState) next(ctx context.Context, h *hedge, handle func(Delivery), b *bridge) bool {
	st.mu.Lock()
	if st.gone {
		st.mu.Unlock()
		return false
	}
	from, filter, since := st.last+1, st.cfg.FilterSubjects[0], st.cfg.OptStartTime
	if from > 1 || st.cfg.DeliverPolicy != jetstream.DeliverByStartTimePolicy {
		since = nil
	}
	if st.cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy {
		from = max(from, st.cfg.OptStartSeq)
	}
	lastOnly := st.last == 0 && !st.caught && st.cfg.DeliverPolicy == jetstream.DeliverLastPerSubjectPolicy && literal(filter)
	target, epoch := st.target, st.epoch
	st.mu.Unlock()
	if lastOnly {
		// One subject's last message is what its consumer would deliver: not every one before it
		// (the API's CONFIG, whose old versions it would otherwise show in turn).
		g, err := ask(ctx, h, func(ctx context.Context) (batchMsg, error) {
			return getLast(ctx, st.nc, st.streamName, filter)
		})
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && target == 0:
			st.bridgeDeliver(epoch, Delivery{CaughtUp: true}, handle)
		case err == nil:
			b.read.Add(1)
			d := g.delivery(st.streamName, 0)
			d.CaughtUp = g.m.Sequence >= target
			st.bridgeDeliver(epoch, d, handle)
		}
		return err == nil
	}
	got, err := ask(ctx, h, func(ctx context.Context) ([]batchMsg, error) {
		return getBatch(ctx, st.nc, st.streamName, filter, from, since, bridgeBatch, batchBytes)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) && from > target {
		st.bridgeDeliver(epoch, Delivery{CaughtUp: true}, handle)
	}
	if err != nil {
		return false
	}
	// A message from a server that does not batch counts one more to come before the follower
	// caught up (the CaughtUp the end brings tells when none does), none after (no CaughtUp
	// follows then: each message is told as the last).
	unknown := uint64(0)
	if !st.isCaught() {
		unknown = 1
	}
	for _, g := range got {
		b.read.Add(1)
		pending := g.pending
		if pending == unknownPending {
			pending = unknown
		}
		d := g.delivery(st.streamName, pending)
		d.CaughtUp = g.pending == 0 && g.m.Sequence >= target
		st.bridgeDeliver(epoch, d, handle)
	}
	return len(got) > 0
}

// literal reports whether subject names one subject: no token of it is a wildcard.
func literal(subject string) bool {
	for token := range strings.SplitSeq(subject, ".") {
		if token == "*" || token == ">" {
			return false
		}
	}
	return true
}

// batchMsg is one message of a batched direct get, with how many messages matching the filter
// the stream held beyond it.
type batchMsg struct {
	m       *jetstream.RawStreamMsg
	pending uint64
}

// delivery is the Delivery of g read from stream, with pending.
func (g batchMsg) delivery(stream string, pending uint64) Delivery {
	return Delivery{Msg: storedMsg{m: g.m, stream: stream}, Subject: g.m.Subject, Data: g.m.Data, Seq: g.m.Sequence,
		Stamp: g.m.Time, Pending: pending}
}

// getLast asks any replica of stream, by a direct get, for the last message of subject.
// jetstream.ErrMsgNotFound says the stream holds none.
func getLast(ctx context.Context, nc *nats.Conn, stream, subject string) (batchMsg, error) {
	r, err := nc.RequestWithContext(ctx, directGet+stream+"."+subject, nil)
	if err != nil {
		return batchMsg{}, err
	}
	g, end, err := parseBatchReply(r.Header, r.Data)
	switch {
	case err != nil:
		err = fmt.Errorf("direct get of %s: %w", stream, err)
	case end || g.m.Subject != subject:
		err = fmt.Errorf("direct get of %s: an answer that is not the last message of %s", stream, subject)
	}
	return g, err
}

// getBatch asks any replica of stream, by one direct get, for up to n messages matching filter
// from sequence from on, or, with since, from the first stored at since on, and, with maxBytes,
// no more after those that reach maxBytes (the first is sent whatever its size; 0: the server's
// max_pending, 64 MiB by default). nats-server 2.11
// and later answer with the messages, then an end-of-batch status; an earlier one answers the
// first message alone, which is returned alone.
// jetstream.ErrMsgNotFound says the stream holds none.
func getBatch(ctx context.Context, nc *nats.Conn, stream, filter string, from uint64, since *time.Time, n, maxBytes int) ([]batchMsg, error) {
	if since != nil {
		from = 0 // a direct get takes one or the other
	}
	req, err := json.Marshal(struct {
		Seq   uint64     `json:"seq,omitempty"`
		Since *time.Time `json:"start_time,omitempty"`
		Next  string     `json:"next_by_subj"`
		Batch int        `json:"batch"`
		Bytes int        `json:"max_bytes,omitempty"`
	}{from, since, filter, n, maxBytes})
	if err != nil {
		return nil, err
	}
	out, _, err := getReplies(ctx, nc, stream, req, n, nil)
	return out, err
}

// getMulti asks any replica of stream, by one direct get, for the last message of each of
// subjects (at most 1,024: a server answers no more to one) stored at sequence from or later,
// oldest first, and no more after those that reach maxBytes, as getBatch does; each comes with
// the count of the subjects' last messages stored after it, and the page with the last sequence
// the answering replica held (0 where it does not say). nats-server 2.11 and later answer it
// (multi_last). jetstream.ErrMsgNotFound says the stream holds none. An answer from a replica
// holding less than held, what the replica of the page before held, is errBehind: the page
// before stopped short of a subject's last message there, and this one would give neither that
// message nor the earlier one it holds, before from.
func getMulti(ctx context.Context, nc *nats.Conn, stream string, subjects []string, from, held uint64, maxBytes int, answering func()) (page, error) {
	req, err := json.Marshal(struct {
		Seq   uint64   `json:"seq,omitempty"`
		Last  []string `json:"multi_last"`
		Bytes int      `json:"max_bytes"`
	}{from, subjects, maxBytes})
	if err != nil {
		return page{}, err
	}
	out, end, err := getReplies(ctx, nc, stream, req, len(subjects), answering)
	upTo, uerr := strconv.ParseUint(end.Get("Nats-UpTo-Sequence"), 10, 64)
	switch {
	case held > 0 && (errors.Is(err, jetstream.ErrMsgNotFound) || err == nil && uerr == nil && upTo < held):
		return page{}, errBehind
	case err != nil:
		return page{}, err
	}
	return page{out, upTo}, nil
}

// page is one of AnyLastOf's reads: the messages, and the last sequence the replica that
// answered held (0 where it does not say).
type page struct {
	msgs []batchMsg
	held uint64
}

// getReplies sends req, a batched direct get of up to n messages, to stream and collects the
// messages answered until the end of the batch, calling answering, unless nil, at each reply. It
// returns the end of the batch's header too (nil for an answer without one).
func getReplies(ctx context.Context, nc *nats.Conn, stream string, req []byte, n int, answering func()) ([]batchMsg, nats.Header, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(directGet+stream, inbox, req); err != nil {
		return nil, nil, err
	}
	var out []batchMsg
	for len(out) <= n {
		r, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, nil, err
		}
		if answering != nil {
			answering()
		}
		g, end, err := parseBatchReply(r.Header, r.Data)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && len(out) > 0:
			return out, nil, nil
		case err != nil:
			return nil, nil, fmt.Errorf("direct get of %s: %w", stream, err)
		case end:
			return out, r.Header, nil
		}
		out = append(out, g)
		if g.pending == unknownPending {
			return out, nil, nil // a server that does not batch
		}
	}
	return nil, nil, fmt.Errorf("direct get of %s: more than the %d messages asked for", stream, n)
}

// unknownPending stands for the count of messages beyond one that a server answering a direct
// get without batches does not give: more may follow.
const unknownPending = 1<<64 - 1

// ParseDirectGet reads one reply to a direct get (batched or not), whatever reads it: a
// message m with the count of messages matching the request's filter the stream held beyond it
// (pending; math.MaxUint64 when the reply does not say it, as a server that does not batch
// does not), or the end of a batch (end), with the count the stream held beyond the batch, or
// the error a status reply stands for (jetstream.ErrMsgNotFound for none). Anything else is an
// error: the reply comes from the network.
func ParseDirectGet(hdr nats.Header, data []byte) (m *jetstream.RawStreamMsg, pending uint64, end bool, err error) {
	g, end, err := parseBatchReply(hdr, data)
	return g.m, g.pending, end, err
}

// parseBatchReply reads one reply to a batched direct get: a message, whose pending is
// unknownPending when the reply does not say it, or the end of the batch (end, pending the
// count beyond it), or the error a status reply stands for (jetstream.ErrMsgNotFound for none).
// Anything else is an error: the reply comes from the network. A status reply is one without a sequence: a stored message
// always has one, even one its publisher gave a Status header and no body, which is a message
// (read as the end of the batch, it held the bridge at its sequence).
func parseBatchReply(hdr nats.Header, data []byte) (g batchMsg, end bool, err error) {
	if status := hdr.Get("Status"); status != "" && len(data) == 0 && hdr.Get(jetstream.SequenceHeader) == "" {
		switch status {
		case "204":
			more, err := strconv.ParseUint(hdr.Get("Nats-Num-Pending"), 10, 64)
			if err != nil {
				return batchMsg{}, false, errors.New("end of batch without its pending count")
			}
			return batchMsg{pending: more}, true, nil
		case "404":
			return batchMsg{}, false, jetstream.ErrMsgNotFound
		default:
			return batchMsg{}, false, statusError{status, hdr.Get("Description")}
		}
	}
	seq, err := strconv.ParseUint(hdr.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return batchMsg{}, false, fmt.Errorf("sequence %q", hdr.Get(jetstream.SequenceHeader))
	}
	at, err := time.Parse(time.RFC3339Nano, hdr.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return batchMsg{}, false, fmt.Errorf("time stamp %q", hdr.Get(jetstream.TimeStampHeaer))
	}
	subject := hdr.Get(jetstream.SubjectHeader)
	if subject == "" {
		return batchMsg{}, false, errors.New("no subject")
	}
	pending := uint64(unknownPending)
	if p := hdr.Get("Nats-Num-Pending"); p != "" {
		if pending, err = strconv.ParseUint(p, 10, 64); err != nil || pending == unknownPending {
			return batchMsg{}, false, fmt.Errorf("pending %q", p)
		}
	}
	return batchMsg{m: &jetstream.RawStreamMsg{Subject: subject, Sequence: seq, Header: hdr, Data: data, Time: at}, pending: pending}, false, nil
}

// statusError is a direct get's status reply other than a message, the end of a batch or "no
// message found": the server refused the request (a server older than 2.11 answers a multi_last
// "408 Empty Request").
type statusError struct{ status, description string }

func (e statusError) Error() string { return "status " + e.status + " " + e.description }

// hedge sends a bridge's direct gets again while they wait for a replica that does not answer.
//
// NATS hands each direct get to one of the stream's replicas at random, even to one behind a
// route whose node hangs: asked once, a bridge would wait followProbe for that node every time it
// drew it. Every copy asks the same question (the first message at or after a sequence, or the
// last of a subject), and every replica holds a prefix of the same stream, so a copy answers
// what the leader would, or what the leader held earlier: nothing, or an older last message,
// which followState.deliver drops. Such an answer from a replica that lags ends the ask like any
// other, and costs the bridge a bridgePoll.
type hedge struct {
	// rtt is how long the last answered copy took, in nanoseconds.
	rtt atomic.Int64
}

// after is how long an ask waits for an answer before it sends another copy: twice the last
// answer's round trip, so that a distant cluster is not asked again before it could have
// answered, but at least bridgeHedge and at most four times that, so that one slow answer (a
// node busy with an election) does not leave the next ask waiting on a hung replica.
func (h *hedge) after() time.Duration {
	return min(max(bridgeHedge, 2*time.Duration(h.rtt.Load())), 4*bridgeHedge)
}

// hedgeCopies is how many copies of a read ask sends h.after() apart; each one after them waits
// twice as long as the one before, up to maxHedgeGap. A replica that hangs draws a copy one time
// in three at most: one read in 6,561 is unanswered when the ninth goes. A read that
// no replica answers (each node of the stream hung, or JetStream stalled while NATS answers)
// sent a copy every 50 to 200 ms for its whole bound, each a goroutine and a request waiting: a
// prober's read of its region's records, bounded by its TTL less a heartbeat, sent about 1,180.
const (
	hedgeCopies = 8
	maxHedgeGap = time.Second
)

// gap is how long an ask that sent sent copies waits before the next (hedgeCopies).
func (h *hedge) gap(sent int) time.Duration {
	d := h.after()
	for i := hedgeCopies; i < sent && d < maxHedgeGap; i++ {
		d *= 2
	}
	return min(d, maxHedgeGap)
}

// ask sends the direct get get, and sends it again each h.after() while no copy has answered
// (further apart after hedgeCopies), those sent before still waiting. The first answer ends it (a message, or an error such as "no
// message found"), or ctx's deadline does, or, for a ctx without one (a bridge's), followProbe:
// a caller that allows a read longer (an operator's command against a cluster that answers
// slowly) is not failed sooner. Copies are not capped at the stream's replicas: NATS may hand
// several in a row to the same hung replica (a cap of twice the replicas still let asks wait out
// followProbe in the test). An answer get gives as errBehind or errUnheard is no answer. The
// copies still waiting when it returns end with it, not with ctx: those on a hung replica waited
// out the caller's bound, a goroutine and a request each (fifty reads within a caller's 10 s
// left 22).
func ask[T any](ctx context.Context, h *hedge, get func(context.Context) (T, error)) (T, error) {
	var cancel context.CancelFunc
	if _, bounded := ctx.Deadline(); bounded {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, followProbe)
	}
	defer cancel()
	answers, send := copies(ctx, h, get)
	send()
	sent := 1
	again := time.NewTimer(h.gap(sent))
	defer again.Stop()
	for {
		select {
		case a := <-answers:
			if a.ended() {
				continue // this copy's wait ended with the ask's: the case below says so
			}
			if errors.Is(a.err, errBehind) || errors.Is(a.err, errUnheard) {
				continue // another copy, sent on h's clock, may reach a replica that is not, or a listener
			}
			return a.m, a.err
		case <-again.C:
			send()
			sent++
			again.Reset(h.gap(sent))
		case <-ctx.Done():
			var none T
			return none, ctx.Err()
		}
	}
}

// answer is what one copy of an ask's direct get gave.
type answer[T any] struct {
	m   T
	err error
}

// ended reports whether the copy's wait ended with the ask's (ctx's end), which is no answer.
func (a answer[T]) ended() bool {
	return a.err != nil && (errors.Is(a.err, context.DeadlineExceeded) || errors.Is(a.err, context.Canceled))
}

// copies returns the channel on which the copies of get, sent under ctx, answer, and send, which
// sends one more: each answered while ctx lasts sets h's round trip, and one answering after ctx
// ended is dropped.
func copies[T any](ctx context.Context, h *hedge, get func(context.Context) (T, error)) (<-chan answer[T], func()) {
	answers := make(chan answer[T])
	return answers, func() {
		go func(at time.Time) {
			m, err := get(ctx)
			if ctx.Err() == nil {
				h.rtt.Store(int64(time.Since(at)))
			}
			select {
			case answers <- answer[T]{m, err}:
			case <-ctx.Done():
			}
		}(time.Now())
	}
}

// errUnheard is what a copy of an ask's read returns when no one listened where it was sent (no
// responders): ask waits for another copy's answer, as for none.
var errUnheard = errors.New("no responders yet")

// errBehind is what a copy of an ask's read returns for an answer that only a replica behind
// the leader gives (see Preempted): ask waits for another copy's answer, as for none.
var errBehind = errors.New("answered by a replica behind the leader")

// stop ends the bridge and waits until it delivers no more.
func (b *bridge) stop() {
	if b == nil {
		return
	}
	b.cancel()
	<-b.done
}

// count returns how many messages b's direct gets returned, or -1 for no bridge: the follower
// said when it is reachable again, so that an operator sees whether it read anything meanwhile.
func (b *bridge) count() int64 {
	if b == nil {
		return -1
	}
	return b.read.Load()
}

// errDirect is what acknowledging a message read by a direct get returns: no consumer sent it.
var errDirect = errors.New("events: a message read by direct get has no consumer to acknowledge")

// storedMsg is a message a bridge read by a direct get, as a jetstream.Msg.
type storedMsg struct {
	m      *jetstream.RawStreamMsg
	stream string
}

func (s storedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: s.m.Sequence}, Timestamp: s.m.Time, Stream: s.stream}, nil
}
func (s storedMsg) Data() []byte                       { return s.m.Data }
func (s storedMsg) Headers() nats.Header               { return s.m.Header }
func (s storedMsg) Subject() string                    { return s.m.Subject }
func (s storedMsg) Reply() string                      { return "" }
func (s storedMsg) Ack() error                         { return errDirect }
func (s storedMsg) DoubleAck(context.Context) error    { return errDirect }
func (s storedMsg) Nak() error                         { return errDirect }
func (s storedMsg) NakWithDelay(time.Duration) error   { return errDirect }
func (s storedMsg) InProgress() error                  { return errDirect }
func (s storedMsg) Term() error                        { return errDirect }
func (s storedMsg) TermWithReason(reason string) error { return errDirect }
