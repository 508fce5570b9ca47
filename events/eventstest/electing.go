package eventstest

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Electing is a JetStream client for which the stream taking the subjects under Prefix has no
// leader while the election is on (a Raft election, 4 to 9 s after the JetStream node leading it
// died), while the NATS server itself answers: a publish there stores nothing. With Unanswered
// it waits until its context ends, as nats.go's does for a publish the dying leader took (its
// 5 s default when the context has none); without, it fails at once, as when no server holds
// the stream's subjects ("no responders"). When StreamName is set, opening that stream (a
// STREAM.INFO request, which only its leader answers) goes unanswered whatever Unanswered says:
// on a cluster of three nats-server processes it went unanswered through the whole 7 s election
// after its leader was killed. Everything else goes to the embedded client.
type Electing struct {
	jetstream.JetStream
	Prefix     string
	StreamName string
	Unanswered bool
	// On is the election, shared by the clients of one cluster (NewElecting makes one).
	On *atomic.Bool
	// Refused counts the publishes and openings that found the stream electing.
	Refused atomic.Int64
}

// NewElecting returns a client of js whose stream under prefix elects while e.On is set.
func NewElecting(js jetstream.JetStream, prefix string, unanswered bool) *Electing {
	return &Electing{JetStream: js, Prefix: prefix, Unanswered: unanswered, On: new(atomic.Bool)}
}

// PublishMsg publishes m, or does as a stream electing a leader does.
func (e *Electing) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !e.On.Load() || !strings.HasPrefix(m.Subject, e.Prefix) {
		return e.JetStream.PublishMsg(ctx, m, opts...)
	}
	e.Refused.Add(1)
	if !e.Unanswered {
		return nil, jetstream.ErrNoStreamResponse
	}
	return nil, unanswered(ctx)
}

// PublishMsgAsync publishes m without waiting, or does as a stream electing a leader does: the
// future is never resolved (Unanswered), or fails at once.
func (e *Electing) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if !e.On.Load() || !strings.HasPrefix(m.Subject, e.Prefix) {
		return e.JetStream.PublishMsgAsync(m, opts...)
	}
	e.Refused.Add(1)
	f := &electingFuture{msg: m, ok: make(chan *jetstream.PubAck), err: make(chan error, 1)}
	if !e.Unanswered {
		f.err <- jetstream.ErrNoStreamResponse
	}
	return f, nil
}

// electingFuture is the future of a publish to a stream electing a leader.
type electingFuture struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *electingFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *electingFuture) Err() <-chan error            { return f.err }
func (f *electingFuture) Msg() *nats.Msg               { return f.msg }

// Stream opens the named stream, or, for the electing one, waits until ctx ends.
func (e *Electing) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if !e.On.Load() || name != e.StreamName {
		return e.JetStream.Stream(ctx, name)
	}
	e.Refused.Add(1)
	return nil, unanswered(ctx)
}

// unanswered waits until ctx ends, or nats.go's 5 s default when ctx has no deadline, and
// returns why it ended.
func unanswered(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	<-ctx.Done()
	return ctx.Err()
}

// Publish publishes data on subject as PublishMsg does.
func (e *Electing) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return e.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, opts...)
}
