package events

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bridgePoll is how often a bridge asks for the next message once it has read all there was.
const bridgePoll = 200 * time.Millisecond

// bridgeHedge is how long a bridge waits for the answer to a direct get before it sends the
// same request again (see ask).
const bridgeHedge = 50 * time.Millisecond

// bridgeAsks is how many subjects a BridgeLast bridge asks for at once.
const bridgeAsks = 8

// bridge reads a stream by direct gets while a follower has no consumer, from whichever replica
// answers (see Bridge).
type bridge struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// bridge starts reading the stream as mode says, after the last message delivered, until stop.
// It starts nothing (and stop is a no-op) for BridgeNone, before the follower first caught up or
// opened the stream, or, for BridgeNext, when it follows more than one filter subject.
func (st *followState) bridge(ctx context.Context, mode Bridge, lastOf func() []string, handle func(Delivery)) *bridge {
	st.mu.Lock()
	s, caught := st.stream, st.caught
	st.mu.Unlock()
	if mode == BridgeNone || s == nil || !caught || !s.CachedInfo().Config.AllowDirect ||
		(mode == BridgeNext && len(st.cfg.FilterSubjects) != 1) || (mode == BridgeLast && lastOf == nil) {
		return nil
	}
	name := s.CachedInfo().Config.Name
	var subjects []string
	if mode == BridgeLast {
		subjects = lastOf()
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &bridge{cancel: cancel, done: make(chan struct{})}
	deliver := func(m *jetstream.RawStreamMsg) {
		st.deliver(Delivery{Msg: storedMsg{m: m, stream: name}, Subject: m.Subject, Data: m.Data, Seq: m.Sequence, Stamp: m.Time}, handle)
	}
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			if mode == BridgeNext {
				seq := st.lastSeq() + 1
				m, err := ask(ctx, st.fresh, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
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
					slots <- struct{}{}
					wg.Go(func() {
						defer func() { <-slots }()
						m, err := ask(ctx, st.fresh, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
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
	return b
}

// ask sends the direct get get, and sends it again whenever bridgeHedge passes without an answer,
// or at once when an answer brings nothing new (no message, or one that fresh says was
// delivered already), while the copies sent before keep waiting. It returns the first new
// message any copy answers, or gives up when two copies answered without one, or after
// followProbe.
//
// NATS hands each copy to one of the stream's replicas at random, even to one behind a route
// whose node hangs: asked once, the bridge would wait followProbe for that node every time it
// drew it. Every copy asks the same question (the first message at or after a sequence, or the
// last of a subject), and every replica holds a prefix of the same stream, so a copy answers
// what the leader would, or what the leader held earlier: nothing, or an older last message,
// which followState.deliver would drop. A replica that lags answers so at once; taken as final,
// that answer would cost the bridge a bridgePoll while another replica held the message. So one
// such answer sends another copy, and only a second ends the ask, which is also how every ask
// ends while the stream holds nothing new: two requests a poll instead of one.
func ask(ctx context.Context, fresh func(*jetstream.RawStreamMsg) bool, get func(context.Context) (*jetstream.RawStreamMsg, error)) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, followProbe)
	defer cancel()
	type answer struct {
		m   *jetstream.RawStreamMsg
		err error
	}
	answers := make(chan answer)
	send := func() {
		go func() {
			m, err := get(ctx)
			select {
			case answers <- answer{m, err}:
			case <-ctx.Done():
			}
		}()
	}
	send()
	hedge := time.NewTicker(bridgeHedge)
	defer hedge.Stop()
	var no error
	for {
		select {
		case a := <-answers:
			if a.err == nil && !fresh(a.m) {
				a.err = errNothingNew
			}
			switch {
			case a.err == nil:
				return a.m, nil
			case errors.Is(a.err, context.DeadlineExceeded) || errors.Is(a.err, context.Canceled):
				// This copy's wait ended with the ask's: the select below says so.
			case no != nil:
				return nil, a.err
			default:
				no = a.err
				send()
			}
		case <-hedge.C:
			send()
		case <-ctx.Done():
			if no != nil {
				return nil, no
			}
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

// errNothingNew is the answer of a replica that holds no message the bridge has not delivered.
var errNothingNew = errors.New("events: no message newer than the last delivered")

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
