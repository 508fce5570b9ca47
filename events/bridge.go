package events

import (
	"context"
	"errors"
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
// It starts nothing (and stop is a no-op) for BridgeNone, before the follower first opened the
// stream or caught up with it, or, for BridgeNext, when it follows more than one filter subject;
// how says which, for the follower's log ("" for BridgeNone), or "direct gets" when it started.
//
// Before it first caught up, a follower has no place to bridge from: it holds only part of
// what its Start asks for (the last message of every subject, say), and the rest is not a
// matter of reading after its last message.
func (st *followState) bridge(ctx context.Context, mode Bridge, lastOf func() []string, handle func(Delivery)) (b *bridge, how string) {
	st.mu.Lock()
	s, caught := st.stream, st.caught
	st.mu.Unlock()
	switch {
	case mode == BridgeNone:
		return nil, ""
	case s == nil:
		return nil, "none: stream not opened since start"
	case !caught:
		return nil, "none: not caught up since start"
	case !s.CachedInfo().Config.AllowDirect:
		return nil, "none: stream does not allow direct gets"
	case mode == BridgeNext && len(st.cfg.FilterSubjects) != 1:
		return nil, "none: more than one filter subject"
	case mode == BridgeLast && lastOf == nil:
		return nil, "none: no subjects listed"
	}
	name := s.CachedInfo().Config.Name
	var subjects []string
	if mode == BridgeLast {
		subjects = lastOf()
	}
	ctx, cancel := context.WithCancel(ctx)
	b = &bridge{cancel: cancel, done: make(chan struct{})}
	h := &hedge{}
	deliver := func(m *jetstream.RawStreamMsg) {
		b.read.Add(1)
		st.deliver(Delivery{Msg: storedMsg{m: m, stream: name}, Subject: m.Subject, Data: m.Data, Seq: m.Sequence, Stamp: m.Time}, handle)
	}
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			if mode == BridgeNext {
				seq := st.lastSeq() + 1
				m, err := h.ask(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
					return s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(st.cfg.FilterSubjects[0]))
				})
				if err == nil {
					deliver(m)
					continue
				}
			} else {
				// Up to bridgeAsks subjects at once, so that a round takes about as long as
				// one ask whatever the number of subjects.
				var wg sync.WaitGroup
				slots := make(chan struct{}, bridgeAsks)
				for _, subject := range subjects {
					if ctx.Err() != nil {
						break
					}
					slots <- struct{}{}
					wg.Go(func() {
						defer func() { <-slots }()
						m, err := h.ask(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
							return s.GetLastMsgForSubject(ctx, subject)
						})
						if err == nil {
							deliver(m)
						}
					})
				}
				wg.Wait()
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

// ask sends the direct get get, and sends it again each h.after() while no copy has answered,
// those sent before still waiting. The first answer ends it (a message, or an error such as "no
// message found"), or followProbe does. Copies are not capped at the stream's replicas: NATS
// may hand several in a row to the same hung replica (a cap of twice the replicas still let
// asks wait out followProbe in the test).
func (h *hedge) ask(ctx context.Context, get func(context.Context) (*jetstream.RawStreamMsg, error)) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, followProbe)
	defer cancel()
	type answer struct {
		m   *jetstream.RawStreamMsg
		err error
	}
	answers := make(chan answer)
	send := func() {
		go func(at time.Time) {
			m, err := get(ctx)
			if ctx.Err() == nil {
				h.rtt.Store(int64(time.Since(at)))
			}
			select {
			case answers <- answer{m, err}:
			case <-ctx.Done():
			}
		}(time.Now())
	}
	send()
	again := time.NewTimer(h.after())
	defer again.Stop()
	for {
		select {
		case a := <-answers:
			if a.err != nil && (errors.Is(a.err, context.DeadlineExceeded) || errors.Is(a.err, context.Canceled)) {
				continue // this copy's wait ended with the ask's: the case below says so
			}
			return a.m, a.err
		case <-again.C:
			send()
			again.Reset(h.after())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

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
