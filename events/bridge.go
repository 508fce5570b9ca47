package events

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bridgePoll is how often a bridge asks for the next message once it has read all there was.
const bridgePoll = 200 * time.Millisecond

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
				gctx, gcancel := context.WithTimeout(ctx, followProbe)
				m, err := s.GetMsg(gctx, st.lastSeq()+1, jetstream.WithGetMsgSubject(st.cfg.FilterSubjects[0]))
				gcancel()
				if err == nil {
					deliver(m)
					continue
				}
			} else {
				for _, subject := range subjects {
					gctx, gcancel := context.WithTimeout(ctx, followProbe)
					m, err := s.GetLastMsgForSubject(gctx, subject)
					gcancel()
					if err == nil {
						deliver(m)
					}
				}
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

// stop ends the bridge and waits until it delivers no more.
func (b *bridge) stop() {
	if b == nil {
		return
	}
	b.cancel()
	<-b.done
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
