package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events/logs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
)

// followRetry bounds the wait between two attempts to follow a stream again, so that a follower
// is back within a second of JetStream answering again.
const followRetry = 500 * time.Millisecond

// followProbe bounds the request that tells whether JetStream answers before a consumer is
// created: nats.go waits up to ten seconds for a consumer while the cluster has no quorum.
const followProbe = time.Second

// bridgeEarly is how long a follower may go without a consumer, once its stream is open, before
// one with a Bridge reads by direct gets while it waits: JetStream places the consumer on any
// node of the stream, even one that hangs, whose answer the creation then waits 2*followProbe
// for, and a restarted follower first asks about and deletes the consumer its last run left,
// which waits for that consumer's node (followProbe/4 and followProbe). A creation answered
// later stops the bridge, as after a loss.
const bridgeEarly = followProbe / 4

// Follower reads one stream, in order, for as long as its context lasts, through whatever
// happens to JetStream: every long-lived reader in Detour (the DNS server, the decider, the
// controller, the edges' route watch, the probers' membership) is one. When its consumer fails
// (the node hosting it died, the connection dropped, the cluster lost its quorum) it creates
// another on a live node, starting after the last message it delivered, and tries again every
// half second until that works. It logs the loss once and the recovery once, not per attempt.
//
// Creating a consumer needs the JetStream cluster's meta leader: when the node that died led it
// too, no consumer can be created until the others elect another, 4 to 9 s later. Meanwhile a
// follower with a Bridge reads by direct gets, which any replica of the stream answers without a
// consumer or a leader, so that what the stream stores still reaches it within a fraction of a
// second.
type Follower struct {
	JS     jetstream.JetStream
	Stream string
	// Start says where to begin the first time (deliver policy, filter subjects). After a loss
	// the follower resumes after the last message it delivered; in a stream that was deleted and
	// created again (whose sequences start over), at its first message (BridgeLast: at Start).
	// A Start at a sequence the stream has not reached is read from its first message too: the
	// sequence before it was read in an earlier stream of the name.
	Start jetstream.OrderedConsumerConfig
	// Log receives the loss and the recovery; the follower adds the stream's name.
	Log zerolog.Logger
	// Reader tells this follower from the process's other readers of the stream: "" for the
	// role's own reading of it, else a short word ("config", "api", "alerts"). When the
	// connection receives its replies under its NATS user's own inbox (InboxPrefix, as every
	// role's does), the consumer is named ConsumerName(user, Reader), so that the user may be
	// allowed exactly its own consumers and no one else's (deployments/nats/accounts.conf). Each
	// (re)start deletes the consumer of that name first: one process per NATS user. Two processes
	// connected as one user would delete each other's consumer in turn; each says so at error
	// level (SharedUserMessage), the newcomer at once when it finds the consumer in use by a live
	// reader, the other when its consumer is deleted, and both go on reading. A connection
	// without its own inbox (the one identity of detour up) gets a random name.
	Reader string
	// Bridge is how the follower reads while it cannot create a consumer. Default BridgeNone.
	Bridge Bridge
	// Last lists the subjects a BridgeLast follower reads the last message of; nil asks it for
	// the list each time it starts bridging, so that it follows a changing configuration.
	Last func() []string
	// Created is when the stream was created that the handler's state, kept from an earlier
	// run (a snapshot), was folded from (Delivery.Created); zero when it kept none. A stream
	// created at another time is a new one, read from its first message (Delivery.Recreated).
	Created time.Time
}

// SharedUserMessage is what a follower logs, at error level, when another client of its NATS user
// reads through its consumer or deletes it: two processes share one user, and each deletes the
// other's consumer when it (re)starts. The line names the stream, the consumer and the user, and
// says how it was seen ("in use at start" or "deleted while reading"); it recurs at most once a
// minute, with the count of those held back.
const SharedUserMessage = "another client of this nats user reads through this process's consumer: give each process its own nats user"

// errConsumerTaken marks the loss of a named consumer that another client deleted.
var errConsumerTaken = errors.New("deleted by another client")

// Bridge is how a Follower reads its stream while no consumer can be created.
type Bridge int

const (
	// BridgeNone waits for a consumer.
	BridgeNone Bridge = iota
	// BridgeNext reads every message after the last one delivered that matches the one filter
	// subject, in order. Its NATS user needs $JS.API.DIRECT.GET.<stream>, which lets it read any
	// message of the stream: for followers allowed to read all of it.
	BridgeNext
	// BridgeLast reads the last message of each subject Follower.Last lists, subjects whose
	// every message replaces the one before (an edge's route of one app): messages stored in
	// between are skipped, and each subject is delivered in order (a message older than the last
	// one delivered on its subject is not delivered). After a loss the consumer starts again
	// from Start (the last message per subject) rather than after the last message delivered.
	// Its NATS user needs only $JS.API.DIRECT.GET.<stream>.<subject> for those subjects.
	BridgeLast
)

// Delivery is one message of the followed stream, or only the news that the follower caught up
// (Msg nil).
type Delivery struct {
	Msg     jetstream.Msg
	Subject string
	Data    []byte
	Seq     uint64
	// Stamp is when the stream stored the message.
	Stamp time.Time
	// Pending is how many matching messages the stream held beyond this one when it was sent.
	Pending uint64
	// CaughtUp is set on the first delivery at which everything the stream held when the
	// follower started has been delivered; on a delivery without Msg when there was nothing.
	CaughtUp bool
	// Recreated is set on the first delivery after the follower found its stream deleted and
	// created again: the first message of the new stream, or a delivery without Msg when that
	// holds nothing the follower reads. Every message from there on is the new stream's, whose
	// sequences start over at 1: a handler that folds messages by sequence (one per subject, or
	// the highest) forgets what it folded before and starts over from this delivery.
	Recreated bool
	// Created is when the stream the delivery comes from was created: a handler that keeps its
	// state across runs keeps it too, for Follower.Created.
	Created time.Time
}

// Run calls handle with every message, in stream order, until ctx ends. handle is called once
// at a time, on the follower's goroutine or, while a BridgeLast bridge reads, on one of the
// goroutines asking for its subjects (each subject in order; subjects asked in one round in any
// order): while it blocks, nothing more is delivered.
func (f *Follower) Run(ctx context.Context, handle func(Delivery)) {
	log := f.Log.With().Str("stream", f.Stream).Logger()
	st := &followState{cfg: f.Start, mode: f.Bridge, created: f.Created, nc: f.JS.Conn(), streamName: f.Stream}
	began := time.Now()
	st.caughtUp = func(seq uint64) {
		log.Info().Uint64("stream_seq", seq).Dur("after", time.Since(began)).Msg("stream caught up")
	}
	user := inboxUser(f.JS.Conn())
	if user != "" {
		st.name = ConsumerName(user, f.Reader)
	}
	shared := logs.NewRepeats(time.Minute)
	st.shared = func(how string) {
		shared.Gate(log.Error(), "shared").Str("consumer", st.name).Str("nats_user", user).Str("how", how).Msg(SharedUserMessage)
	}
	var lostAt time.Time
	// mu guards gap and how: a bridge may start while a consumer's creation waits (see
	// bridgeEarly), on a timer's goroutine.
	var mu sync.Mutex
	var gap *bridge
	// how is how the follower reads while it has no consumer, or why it cannot (st.bridge): it
	// holds while gap runs, across the attempts that fail after the one that started it.
	var how string
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		gap.stop()
	}()
	// creating starts the bridge should the consumer's replacement (see once) go unanswered for
	// bridgeEarly, until the end it returns is called once the creation is answered.
	creating := func() (answered func()) {
		waiting := true
		t := time.AfterFunc(bridgeEarly, func() {
			mu.Lock()
			defer mu.Unlock()
			if waiting && gap == nil {
				gap, how = st.bridge(ctx, f.Bridge, f.Last, handle)
			}
		})
		return func() {
			t.Stop()
			mu.Lock()
			defer mu.Unlock()
			waiting = false
		}
	}
	for {
		err := f.once(ctx, st, handle, creating, func() {
			mu.Lock()
			defer mu.Unlock()
			gap.stop()
			bridged := gap.count()
			gap, how = nil, ""
			if !lostAt.IsZero() {
				log.Info().Dur("down_for", time.Since(lostAt)).Uint64("stream_seq", st.lastSeq()).Int64("bridged", bridged).
					Msg("stream reachable again")
				lostAt = time.Time{}
			}
		})
		if ctx.Err() != nil {
			return
		}
		// Where it lost the stream, read before a bridge starts delivering past it.
		seq := st.lastSeq()
		mu.Lock()
		if gap == nil {
			gap, how = st.bridge(ctx, f.Bridge, f.Last, handle)
		}
		bridging := how
		mu.Unlock()
		if errors.Is(err, errConsumerTaken) {
			// Said by SharedUserMessage instead: a loss and a recovery a second otherwise.
			st.shared("deleted while reading")
		} else if lostAt.IsZero() {
			lostAt = time.Now()
			ev := log.Warn().Err(err).Uint64("stream_seq", seq)
			if bridging != "" {
				ev = ev.Str("bridge", bridging)
			}
			ev.Msg("stream unreachable; retrying")
		} else {
			log.Debug().Err(err).Msg("stream still unreachable")
		}
		t := time.NewTimer(followRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// followState is where a follower is in its stream. Its consumer and, while no consumer can be
// created, its bridge deliver under mu, so that each message is handled once and in order.
type followState struct {
	cfg    jetstream.OrderedConsumerConfig
	mode   Bridge
	mu     sync.Mutex
	last   uint64
	caught bool
	// bySubject is, for BridgeLast, the sequence last delivered on each subject.
	bySubject map[string]uint64
	// stream is the stream as last opened (nil until then); the bridge reads the one named
	// streamName through nc.
	stream     jetstream.Stream
	streamName string
	nc         *nats.Conn
	// created is when that stream was created (at first, Follower.Created): another time means
	// it was deleted and created again, its sequences starting over.
	created time.Time
	// target is the last sequence the stream's leader said it held at the last open, for a
	// follower whose filter is all of the stream's subjects, so that its last message is one the
	// follower reads; else 0. A BridgeNext bridge does not take a replica's word that nothing
	// follows before it delivered that message: the replica may lag the leader.
	target uint64
	// recreated is set from when the follower finds the stream created again until the next
	// delivery, which tells the handler (Delivery.Recreated).
	recreated bool
	// gone is set from when JetStream says the stream does not exist until the follower opens
	// it again: a bridge reads nothing meanwhile, since what it would read by the stream's name
	// is a stream created again, whose sequences started over, and not after the last message
	// of the one deleted. Opening it tells which (startOver).
	gone bool
	// epoch counts the times the follower started over (startOver): a bridge's answer to a
	// question asked at another epoch is dropped, since it asked after a position in a stream
	// the follower no longer reads from (bridgeDeliver).
	epoch uint64
	// name is the consumer's name, the same at every start; "" for a random one each time.
	name string
	// started is set once the first consumer was created; shared logs SharedUserMessage.
	started bool
	shared  func(how string)
	// caughtUp logs the first catching up, at the stream sequence delivered by then.
	caughtUp func(seq uint64)
}

// startOver makes the stream's first message the next one read, the first delivery telling
// that the stream is a new one (Delivery.Recreated). st.mu is held.
func (st *followState) startOver() {
	st.last, st.bySubject, st.recreated = 0, nil, true
	st.epoch++
	if st.mode != BridgeLast {
		st.cfg.DeliverPolicy, st.cfg.OptStartSeq, st.cfg.OptStartTime = jetstream.DeliverAllPolicy, 0, nil
	}
}

func (st *followState) lastSeq() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.last
}

// deliver hands d to handle unless a message at or after d's sequence was handled already (on
// d's subject, for BridgeLast). CaughtUp is told once a run: a consumer created while a bridge
// caught up may say it again, and a message handled already may carry it (it is then delivered
// alone). Nothing is handed while the stream is found deleted (gone).
func (st *followState) deliver(d Delivery, handle func(Delivery)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.deliverLocked(d, handle)
}

// bridgeDeliver is deliver for what a bridge read after asking at epoch: dropped if the
// follower started over since, whose position the question did not ask after (an answer read
// from a stream created again, from after the old stream's last message delivered, would skip
// the new one's first messages).
func (st *followState) bridgeDeliver(epoch uint64, d Delivery, handle func(Delivery)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.epoch != epoch {
		return
	}
	st.deliverLocked(d, handle)
}

// deliverLocked is deliver with st.mu held.
func (st *followState) deliverLocked(d Delivery, handle func(Delivery)) {
	switch {
	case st.gone:
		// Read by a bridge from a stream created again, or asked before the old one was deleted.
		return
	case d.Msg == nil:
	case st.mode == BridgeLast && d.Seq <= st.bySubject[d.Subject], st.mode != BridgeLast && d.Seq <= st.last:
		if !d.CaughtUp || st.caught {
			return
		}
		d = Delivery{CaughtUp: true}
	case st.mode == BridgeLast:
		if st.bySubject == nil {
			st.bySubject = map[string]uint64{}
		}
		st.bySubject[d.Subject] = d.Seq
	}
	if d.CaughtUp && st.caught {
		d.CaughtUp = false
		if d.Msg == nil && !st.recreated {
			return
		}
	}
	if st.recreated {
		d.Recreated, st.recreated = true, false
	}
	d.Created = st.created
	if d.Msg != nil {
		st.last = max(st.last, d.Seq)
	}
	if d.CaughtUp {
		st.caught = true
		st.caughtUp(st.last)
	}
	handle(d)
}

// once creates a consumer and delivers what it reads until it fails or ctx ends. creating is
// called once the stream is open, as the consumer's replacement starts (the named consumer
// asked about and deleted, the new one created), and what it returns once the creation is
// answered or once returns before; started once the consumer reads.
func (f *Follower) once(ctx context.Context, st *followState, handle func(Delivery), creating func() (answered func()), started func()) error {
	pctx, cancel := context.WithTimeout(ctx, followProbe)
	s, err := f.JS.Stream(pctx, f.Stream)
	cancel()
	if err != nil {
		st.isGone(err)
		return fmt.Errorf("open stream %s: %w", f.Stream, err)
	}
	si := s.CachedInfo()
	target := si.State.LastSeq
	st.mu.Lock()
	// A new stream of the same name, its sequences started over: all it holds is new here. So is,
	// at the first open, one that never reached the sequence before Start's: the caller read that
	// sequence in an earlier stream of the name (a role's version, read just before CONFIG was
	// deleted and created again).
	if !st.created.IsZero() && !si.Created.Equal(st.created) ||
		st.created.IsZero() && st.cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && si.State.LastSeq+1 < st.cfg.OptStartSeq {
		st.startOver()
	}
	st.stream, st.created, st.target, st.gone = s, si.Created, 0, false
	// A follower started at a time after the last message's has nothing to wait for.
	after := st.cfg.DeliverPolicy == jetstream.DeliverByStartTimePolicy && st.cfg.OptStartTime != nil &&
		si.State.LastTime.Before(*st.cfg.OptStartTime)
	if si.State.Msgs > 0 && !after && slices.Equal(si.Config.Subjects, st.cfg.FilterSubjects) {
		st.target = si.State.LastSeq
	}
	last, caught, recreated := st.last, st.caught, st.recreated
	st.mu.Unlock()
	answered := creating()
	defer answered()
	cfg := st.cfg
	// Before it first caught up, a follower of the last message of each subject starts at
	// Start again: a bridge that read part of the stream from its first message left the
	// follower at a sequence after which the whole history would follow. The last message of
	// each subject at or before the last delivered is dropped as handled (deliver). A bridge
	// that catches up while this consumer is created may leave out a message stored meanwhile
	// that a later one replaced on its subject, as this Start does.
	if last > 0 && st.mode != BridgeLast && (caught || cfg.DeliverPolicy != jetstream.DeliverLastPerSubjectPolicy) {
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, last+1, nil
	}
	// A plain ephemeral consumer that this loop replaces itself, rather than nats.go's ordered
	// consumer, whose own reset after a reconnection waits up to ten seconds for a consumer.
	name := st.name
	if name == "" {
		name = nuid.Next()
	} else {
		if !st.started && f.inUse(ctx, s, name) {
			st.shared("in use at start")
		}
		if err := f.deleteNamed(ctx, s, name); err != nil {
			return err
		}
	}
	cc := jetstream.ConsumerConfig{Name: name, DeliverPolicy: cfg.DeliverPolicy, OptStartSeq: cfg.OptStartSeq,
		OptStartTime: cfg.OptStartTime, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute,
		MemoryStorage: true, Replicas: 1}
	if len(cfg.FilterSubjects) == 1 {
		cc.FilterSubject = cfg.FilterSubjects[0]
	} else {
		cc.FilterSubjects = cfg.FilterSubjects
	}
	cctx, cancel := context.WithTimeout(ctx, 2*followProbe)
	asked := time.Now()
	cons, err := s.CreateOrUpdateConsumer(cctx, cc)
	cancel()
	if err == nil {
		err = st.heard(ctx, cons.CachedInfo(), name, time.Since(asked))
	}
	answered()
	if err != nil {
		return fmt.Errorf("follow %s: %w", f.Stream, err)
	}
	st.started = true
	// JetStream created the consumer on whichever stream had the name then: one created at another
	// time than the one opened above was deleted and created again meanwhile, and the consumer,
	// started after the last message of the old one, skips the new one's first messages. It is
	// replaced by one that reads the new stream from its first message and says so
	// (Delivery.Recreated).
	vctx, cancel := context.WithTimeout(ctx, followProbe)
	now, err := s.Info(vctx)
	cancel()
	if err != nil {
		return fmt.Errorf("follow %s: read it again: %w", f.Stream, err)
	}
	if !now.Created.Equal(si.Created) {
		if err := f.deleteNamed(ctx, s, name); err != nil {
			return err
		}
		return f.once(ctx, st, handle, creating, started)
	}
	it, err := cons.Messages(FollowOptions()...)
	if err != nil {
		return fmt.Errorf("follow %s: %w", f.Stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	started()
	// The bridge, stopped now, may have caught up meanwhile.
	st.mu.Lock()
	caught = st.caught
	st.mu.Unlock()
	info := cons.CachedInfo()
	empty := info != nil && info.NumPending == 0
	switch {
	case !caught && (target <= last || empty):
		caught = true
		st.deliver(Delivery{CaughtUp: true}, handle)
	case recreated && empty:
		// No message of the new stream is on its way to say it (Delivery.Recreated).
		st.deliver(Delivery{}, handle)
	}
	var consumed uint64
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) && f.sameStream(ctx, st) && st.name != "" {
				return fmt.Errorf("read %s: consumer %s %w (another process connected as the same NATS user?): %w", f.Stream, name, errConsumerTaken, err)
			}
			return fmt.Errorf("read %s: %w", f.Stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue // not a stream message
		}
		if meta.Sequence.Consumer != consumed+1 {
			// A delivery was lost (a pull cut by a reconnection): resume after the last one.
			return fmt.Errorf("read %s: delivery %d after %d", f.Stream, meta.Sequence.Consumer, consumed)
		}
		consumed = meta.Sequence.Consumer
		d := Delivery{Msg: msg, Subject: msg.Subject(), Data: msg.Data(), Seq: meta.Sequence.Stream,
			Stamp: meta.Timestamp, Pending: meta.NumPending}
		if !caught && (d.Pending == 0 || d.Seq >= target) {
			caught, d.CaughtUp = true, true
		}
		st.deliver(d, handle)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// refusedPull is a pull request no consumer accepts (it is not JSON): the consumer answers it
// "400 Bad Request" and delivers nothing.
var refusedPull = []byte("{")

// heard waits until the consumer name, described by info as its creation was answered, answers a
// request on its pull subject sent through the follower's server, unless it lives on that
// server. The consumer's node answers the creation through its route for the system account,
// and tells the follower's server of the consumer's pull subject through its route for the
// consumer's account: nats-server pools its routes between two nodes, one connection per pool
// index of the accounts, and nothing orders one connection's traffic against another's. When
// the answer came first, the first pull met a server that knew no one listening: it answered
// "no responders" (or nothing, through a service import), and nats.go, counting that pull as
// pending, pulled nothing more until it reported the missing heartbeats after
// 2*FollowHeartbeat, the new consumer silent for a second. A request that meets no responder, or
// that goes unanswered, is sent again on a hedge's clock (every 50 to 200 ms, from took, how long
// the creation took), and none answered within followProbe is an error.
func (st *followState) heard(ctx context.Context, info *jetstream.ConsumerInfo, name string, took time.Duration) error {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == st.nc.ConnectedServerName() {
		return nil
	}
	subject := "$JS.API.CONSUMER.MSG.NEXT." + st.streamName + "." + name
	h := &hedge{}
	h.rtt.Store(int64(took))
	// ask bounds a read by followProbe only where ctx has no deadline of its own.
	ctx, cancel := context.WithTimeout(ctx, followProbe)
	defer cancel()
	_, err := ask(ctx, h, func(ctx context.Context) (struct{}, error) {
		_, err := st.nc.RequestWithContext(ctx, subject, refusedPull)
		if errors.Is(err, nats.ErrNoResponders) {
			err = errUnheard
		}
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("reach consumer %s on %s: %w", name, info.Cluster.Leader, err)
	}
	return nil
}

// sameStream reports whether the stream st follows is still the one it created its consumer on:
// deleting a stream deletes its consumers, which is no sign of another process of the user. A
// stream created again since is read from its first message from here, by the bridge that reads
// until the next consumer is created too, not after the last message of the one deleted.
func (f *Follower) sameStream(ctx context.Context, st *followState) bool {
	pctx, cancel := context.WithTimeout(ctx, followProbe)
	defer cancel()
	s, err := f.JS.Stream(pctx, f.Stream)
	if err != nil {
		st.isGone(err)
		return false
	}
	si := s.CachedInfo()
	st.mu.Lock()
	defer st.mu.Unlock()
	if si.Created.Equal(st.created) {
		return true
	}
	st.startOver()
	st.stream, st.created, st.target, st.gone = s, si.Created, 0, false
	return false
}

// isGone sets st.gone when err, from opening the stream, says that it does not exist.
func (st *followState) isGone(err error) {
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gone = true
}

// inUse reports whether the consumer name exists and a live client waits on it for messages: a
// consumer an earlier start of this process left has none waiting (the server drops the pull
// requests of a closed connection), so one that has is another process's, connected as the same
// NATS user. It asks for a short while only and says false when it gets no answer: it is a
// diagnosis, and must not delay a follower whose consumer's node died.
func (f *Follower) inUse(ctx context.Context, s jetstream.Stream, name string) bool {
	ictx, cancel := context.WithTimeout(ctx, followProbe/4)
	defer cancel()
	c, err := s.Consumer(ictx, name)
	if err != nil {
		return false
	}
	info := c.CachedInfo()
	return info != nil && info.NumWaiting > 0
}

// deleteNamed removes the consumer name left by an earlier start (it would refuse a new start
// sequence). When the node hosting it died, JetStream may apply the deletion without answering
// until it counts that node offline: after followProbe the follower goes on to create its
// consumer, which fails, and is tried again, only if the old one is still there.
func (f *Follower) deleteNamed(ctx context.Context, s jetstream.Stream, name string) error {
	dctx, cancel := context.WithTimeout(ctx, followProbe)
	defer cancel()
	err := s.DeleteConsumer(dctx, name)
	if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return nil
	}
	return fmt.Errorf("follow %s: replace consumer %s: %w", f.Stream, name, err)
}

// inboxUser returns the NATS user whose own inbox (InboxPrefix) nc receives its replies under,
// or "" when nc uses the shared one.
func inboxUser(nc *nats.Conn) string {
	if nc == nil {
		return ""
	}
	user, ok := strings.CutPrefix(nc.Opts.InboxPrefix, inboxPrefix)
	if !ok || !ValidToken(user) {
		return ""
	}
	return user
}

// WaitStream opens the named stream, trying again every half second while JetStream cannot be
// reached or the stream does not exist yet, and logging that once. It returns an error only when
// ctx ends.
func WaitStream(ctx context.Context, js jetstream.JetStream, name string, log zerolog.Logger) (jetstream.Stream, error) {
	warned := false
	for {
		pctx, cancel := context.WithTimeout(ctx, followProbe)
		s, err := js.Stream(pctx, name)
		cancel()
		if err == nil {
			if warned {
				log.Info().Str("stream", name).Msg("stream reachable")
			}
			return s, nil
		}
		if !warned {
			log.Warn().Err(err).Str("stream", name).Msg("waiting for stream")
			warned = true
		}
		t := time.NewTimer(followRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
