package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestABridgeAsksAgainRatherThanWaitForAReplicaThatNoLongerAnswers follows a stream of three
// replicas by direct gets, as a follower does while the meta leader is being replaced, with one
// replica's node hung: NATS hands each direct get to a replica at random, that one included.
// Every message must still be delivered once, in order, within 0.8 s of its publishing (for
// BridgeLast: on its subject, or replaced by a later one on its subject within that time); a
// bridge that waited for the hung replica lost a second each time it drew it (1.1–7.8 s
// measured), one that asks again took 0.21–0.42 s (0.52 s under the race detector).
func TestABridgeAsksAgainRatherThanWaitForAReplicaThatNoLongerAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bridge   events.Bridge
		subjects []string
	}{
		{"every message after the last", events.BridgeNext, []string{"t.a"}},
		{"the last message of each subject", events.BridgeLast, []string{"t.a", "t.b", "t.c", "t.d"}},
	} {
		t.Run(tc.name, func(t *testing.T) { bridgeAroundAHungReplica(t, tc.bridge, tc.subjects) })
	}
}

// bridgeAroundAHungReplica publishes 24 messages, 100 ms apart, in turn on subjects, to a
// follower bridging with mode while one replica of the stream hangs.
func bridgeAroundAHungReplica(t *testing.T, mode events.Bridge, subjects []string) {
	const messages, every, within = 24, 100 * time.Millisecond, 800 * time.Millisecond
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One consumer at most: once the follower's is gone and the test holds the only one, the
	// follower cannot create another and bridges, as while the meta leader is replaced.
	st := createT(t, c, 1)
	// The follower and the publisher connect to the stream's leader; a replica that leads
	// neither the stream nor the cluster's metadata hangs.
	leader, hung, _ := c.Replicas(t, st)
	// A connection with an inbox of its own, as every role has, so that the follower's consumer
	// has a fixed name and a start that lost its answer on a loaded machine ("no heartbeat
	// received") finds and deletes the consumer it left, which MaxConsumers would count
	// otherwise (seen in CI).
	_, js := connectAs(t, c.URLs[leader], "t")
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject string) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, subject, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	for _, s := range subjects {
		publish(s)
	}
	// Every node knows every replica's direct gets before one hangs.
	c.DirectGets(t, "T")

	// A message is published at, and delivered at.
	type message struct {
		subject string
		seq     uint64
		at      time.Time
	}
	var mu sync.Mutex
	var got []message
	deliveries := func() []message { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	policy := jetstream.DeliverAllPolicy
	if mode == events.BridgeLast {
		policy = jetstream.DeliverLastPerSubjectPolicy
	}
	var logs eventstest.Logs
	f := events.Follower{JS: js, Stream: "T", Log: zerolog.New(&logs), Bridge: mode, Last: func() []string { return subjects },
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}, DeliverPolicy: policy}}
	done := follow(ctx, &f, func(d events.Delivery) {
		if d.Msg != nil {
			mu.Lock()
			got = append(got, message{d.Subject, d.Seq, time.Now()})
			mu.Unlock()
		}
	})
	defer func() { cancel(); <-done }()
	consumers := func(ctx context.Context) []string {
		var names []string
		for n := range st.ConsumerNames(ctx).Name() {
			names = append(names, n)
		}
		return names
	}
	defer func() {
		if t.Failed() {
			t.Logf("consumers %v; the follower logged:\n%s", consumers(context.Background()), logs.String())
		}
	}()
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(deliveries()) == len(subjects) }, "the messages stored before")

	for n := range st.ConsumerNames(ctx).Name() {
		if err := st.DeleteConsumer(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("stream unreachable; retrying") == 1 },
		"the follower losing its consumer, and bridging")
	c.Silence(hung)

	tick := time.NewTicker(every)
	defer tick.Stop()
	var sent []message
	for i := range messages {
		s := subjects[i%len(subjects)]
		at := time.Now()
		sent = append(sent, message{s, publish(s), at})
		<-tick.C
	}
	eventstest.Eventually(t, 10*time.Second, func() bool {
		d := deliveries()
		for _, m := range sent[messages-len(subjects):] {
			if !slices.ContainsFunc(d, func(d message) bool { return d.seq == m.seq }) {
				return false
			}
		}
		return true
	}, "the last message on each subject delivered")

	// Each message is delivered, or for BridgeLast a later one on its subject instead, within
	// the bound; each subject's deliveries come once each, in order.
	delivered := deliveries()[len(subjects):]
	var late []string
	var slowest time.Duration
	for _, m := range sent {
		i := slices.IndexFunc(delivered, func(d message) bool { return d.subject == m.subject && d.seq >= m.seq })
		if i < 0 {
			late = append(late, fmt.Sprintf("%d on %s never", m.seq, m.subject))
			continue
		}
		took := delivered[i].at.Sub(m.at)
		slowest = max(slowest, took)
		if took > within {
			late = append(late, fmt.Sprintf("%d on %s after %s", m.seq, m.subject, took.Round(time.Millisecond)))
		}
	}
	if len(late) > 0 {
		t.Errorf("%d of %d messages not delivered within %s of their publishing: %s", len(late), messages, within, strings.Join(late, ", "))
	}
	for _, s := range subjects {
		var want, seqs []uint64
		for _, m := range sent {
			if m.subject == s {
				want = append(want, m.seq)
			}
		}
		for _, d := range delivered {
			if d.subject == s {
				seqs = append(seqs, d.seq)
			}
		}
		// BridgeLast skips what a later message on its subject replaced before it was read.
		once := slices.IsSorted(seqs) && len(slices.Compact(slices.Clone(seqs))) == len(seqs) &&
			!slices.ContainsFunc(seqs, func(q uint64) bool { return !slices.Contains(want, q) })
		if !once || mode == events.BridgeNext && !slices.Equal(seqs, want) {
			t.Errorf("delivered %v on %s, want %v: each once, in order", seqs, s, want)
		}
	}
	if names := consumers(ctx); !slices.Equal(names, []string{"blocker"}) {
		t.Errorf("consumers %v, want only the blocker: the follower must have read by direct gets", names)
	}
	t.Logf("%d messages, the slowest delivered %s after it was published, with the replica on n%d hung", messages, slowest, hung)
}

// TestAFollowerStartedWhileTheClusterHasNoQuorumReadsWhatTheReplicaLeftHolds: two of three
// nodes are gone, so the stream has no leader and no consumer can be created; a role started
// then (a DNS server restarted during the outage) must still read the stream from the replica
// left, catch up, and be told so.
func TestAFollowerStartedWhileTheClusterHasNoQuorumReadsWhatTheReplicaLeftHolds(t *testing.T) {
	t.Parallel()
	const stored = 40
	c := eventstest.StartCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := jetstream.New(eventstest.Connect(t, strings.Join(c.URLs, ",")))
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		_, err = admin.CreateStream(cctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3,
			AllowDirect: true, Storage: jetstream.FileStorage})
		return err == nil
	}, "the stream created: %v", err)
	// A stream just created may still be electing its leader, which answers no publish.
	eventstest.Eventually(t, 10*time.Second, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		defer ccancel()
		var st jetstream.Stream
		if st, err = admin.Stream(cctx, "T"); err != nil {
			return false
		}
		info, err := st.Info(cctx)
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, "the stream has a leader")
	var last uint64
	for i := range stored {
		ack, err := admin.Publish(ctx, fmt.Sprintf("t.%d", i%4), nil, jetstream.WithRetryAttempts(20))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	// Every replica holds every message before two nodes go.
	for i := range c.Servers {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			return c.Knows(i, "$JS.API.DIRECT.GET.T") == 3
		}, "node %d knowing the direct gets of all three replicas", i)
	}
	c.Servers[1].Shutdown()
	c.Servers[2].Shutdown()

	_, js := connectAs(t, c.URLs[0], "t")
	var logs eventstest.Logs
	var mu sync.Mutex
	var seqs []uint64
	caught := 0
	f := events.Follower{JS: js, Stream: "T", Log: zerolog.New(&logs), Bridge: events.BridgeNext,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	done := follow(ctx, &f, func(d events.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if d.Msg != nil {
			seqs = append(seqs, d.Seq)
		}
		if d.CaughtUp {
			caught++
		}
	})
	defer func() { cancel(); <-done }()
	defer func() {
		if t.Failed() {
			t.Logf("the follower logged:\n%s", logs.String())
		}
	}()
	eventstest.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return caught == 1 }, "the follower caught up from the replica left")
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != stored || seqs[0] != 1 || seqs[len(seqs)-1] != last || !slices.IsSorted(seqs) {
		t.Errorf("delivered %d messages (%v…), want the %d stored, 1 to %d in order", len(seqs), seqs[:min(len(seqs), 5)], stored, last)
	}
}

// TestABridgeReadsPastAStoredMessageThatLooksLikeAStatusReply: a publisher may give a message a
// Status header and no body, as the server's own replies to a direct get have ("204 EOB", "404
// Message Not Found"). Read by direct gets, such a message is a message like any other (the
// handler's decoding refuses it): a bridge that took it for the end of the batch, or for
// "nothing stored from there", read nothing past it until a consumer could be created again.
func TestABridgeReadsPastAStoredMessageThatLooksLikeAStatusReply(t *testing.T) {
	for _, status := range []string{"204", "404"} {
		t.Run(status, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv, st := oneConsumerStream(t)
			if _, err := srv.JS.Publish(ctx, "t.a", []byte("x")); err != nil {
				t.Fatal(err)
			}
			m := nats.NewMsg("t.b")
			m.Header.Set("Status", status)
			if _, err := srv.JS.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.JS.Publish(ctx, "t.c", []byte("x")); err != nil {
				t.Fatal(err)
			}
			// The only consumer the stream allows: the follower reads by direct gets alone.
			if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
				t.Fatal(err)
			}
			f := events.Follower{JS: srv.JS, Stream: "T", Log: zerolog.Nop(), Bridge: events.BridgeNext,
				Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
			got, done := recordSeqs(ctx, &f)
			defer func() { cancel(); <-done }()
			var seqs []uint64
			eventstest.Eventually(t, 3*time.Second, func() bool { seqs = got(); return len(seqs) == 3 }, "the three stored messages (delivered %v)", &seqs)
		})
	}
}

// TestAFollowerOfTheLastMessagePerSubjectThatBridgedPartOfTheStreamStartsItsConsumerAtItsStart:
// a role that follows the last message of each subject (the DNS server, the deciders, the
// controller on STATE) reads, while no consumer can be created, the stream from its first
// message by direct gets. When a consumer can be created before it caught up, that consumer
// starts where the role's Start says, the last message of each subject, not after the last
// message the bridge delivered: the whole history after it (up to a gigabyte of STATE) would
// otherwise be read message by message, and the role catch up that much later.
func TestAFollowerOfTheLastMessagePerSubjectThatBridgedPartOfTheStreamStartsItsConsumerAtItsStart(t *testing.T) {
	const stored = 3000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, st := oneConsumerStream(t)
	for i := range stored {
		if _, err := srv.JS.PublishAsync([]string{"t.a", "t.b", "t.c"}[i%3], nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-srv.JS.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("messages not stored in 10s")
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seqs []uint64
	caught := 0
	delivered := func() (int, int, uint64) {
		mu.Lock()
		defer mu.Unlock()
		if len(seqs) == 0 {
			return 0, caught, 0
		}
		return len(seqs), caught, seqs[len(seqs)-1]
	}
	f := events.Follower{JS: srv.JS, Stream: "T", Log: zerolog.Nop(), Bridge: events.BridgeNext,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
	done := follow(ctx, &f, func(d events.Delivery) {
		mu.Lock()
		if d.Msg != nil {
			seqs = append(seqs, d.Seq)
		}
		if d.CaughtUp {
			caught++
		}
		mu.Unlock()
		// A handler slow enough that the bridge is still reading when the consumer comes.
		time.Sleep(time.Millisecond)
	})
	defer func() { cancel(); <-done }()
	eventstest.Eventually(t, 5*time.Second, func() bool { n, _, _ := delivered(); return n > 0 }, "the bridge's first message")
	if err := st.DeleteConsumer(ctx, "blocker"); err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { _, c, last := delivered(); return c == 1 && last == stored }, "the last message, and the catching up")
	n, c, _ := delivered()
	if n >= stored/2 {
		t.Errorf("delivered %d of the %d messages of 3 subjects: the consumer read the history after the bridge's last message", n, stored)
	}
	if c != 1 {
		t.Errorf("told caught up %d times, want once", c)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("delivered %d after %d", seqs[i], seqs[i-1])
		}
	}
}

// TestADirectGetReadAsTheBridgeReadsItMatchesJetStreamsOwnRead: the bridge reads batched
// direct gets itself (events.ParseDirectGet) where it used nats.go's Stream.GetMsg. For a
// stream of messages on several subjects, some with headers, some empty, each message read
// from a batch must be the one nats.go reads at that sequence — subject, data, time stamp,
// headers — and each batch must count what the stream holds beyond it.
func TestADirectGetReadAsTheBridgeReadsItMatchesJetStreamsOwnRead(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	st, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, AllowDirect: true,
		Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	const stored = 40
	for i := range stored {
		m := nats.NewMsg([]string{"t.a", "t.b.c", "t.d"}[i%3])
		if i%2 == 0 {
			m.Data = fmt.Appendf(nil, "message %d", i)
		}
		if i%5 == 0 {
			m.Header.Set("X-Detour", strconv.Itoa(i))
		}
		if _, err := srv.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := srv.Conn.SubscribeSync(srv.Conn.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, filter := range []string{"t.>", "t.b.*"} {
		for from := uint64(1); ; {
			req := fmt.Appendf(nil, `{"seq":%d,"next_by_subj":%q,"batch":7}`, from, filter)
			if err := srv.Conn.PublishRequest("$JS.API.DIRECT.GET.T", sub.Subject, req); err != nil {
				t.Fatal(err)
			}
			var read []*jetstream.RawStreamMsg
			var more uint64
			for {
				r, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				m, pending, end, err := events.ParseDirectGet(r.Header, r.Data)
				if err != nil {
					t.Fatalf("%s from %d: %v", filter, from, err)
				}
				if end {
					more = pending
					break
				}
				read = append(read, m)
			}
			for _, m := range read {
				want, err := st.GetMsg(ctx, m.Sequence)
				if err != nil {
					t.Fatal(err)
				}
				if m.Subject != want.Subject || string(m.Data) != string(want.Data) || !m.Time.Equal(want.Time) ||
					m.Header.Get("X-Detour") != want.Header.Get("X-Detour") {
					t.Errorf("%s: seq %d read as %s %q %s %q, nats.go reads %s %q %s %q", filter, m.Sequence, m.Subject, m.Data,
						m.Time, m.Header.Get("X-Detour"), want.Subject, want.Data, want.Time, want.Header.Get("X-Detour"))
				}
				next, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter))
				if err != nil || next.Sequence != m.Sequence {
					t.Fatalf("%s from %d: the batch gave seq %d, nats.go the next matching message at %v (%v)", filter, from, m.Sequence, next, err)
				}
				from = m.Sequence + 1
			}
			if _, err := st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter)); errors.Is(err, jetstream.ErrMsgNotFound) != (more == 0) {
				t.Fatalf("%s: the batch ended with %d more, nats.go finds after seq %d: %v", filter, more, from-1, err)
			}
			if more == 0 {
				break
			}
		}
	}
}

// TestABridgeReadsAStreamLargerThanAConnectionsPendingLimitWithoutBeingCutOff: a follower that
// cannot create its consumer reads a stream of large messages (DNS zone versions, ROUTES, up to
// 1 MiB each) by batched direct gets through a link 100 ms away. Each copy of a batch was
// answered whole, up to the server's max_pending (64 MiB), which is also where the server cuts a
// connection off as too slow: the follower's connection was cut, and its reads began again.
func TestABridgeReadsAStreamLargerThanAConnectionsPendingLimitWithoutBeingCutOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, st := oneConsumerStream(t)
	body := bytes.Repeat([]byte("x"), 900<<10)
	for range 75 {
		if _, err := srv.JS.Publish(ctx, "t.a", body); err != nil {
			t.Fatal(err)
		}
	}
	// The only consumer the stream allows: the follower reads by direct gets alone.
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	link := eventstest.NewSlowLink(t, srv.URL)
	link.Delay(100*time.Millisecond, 0)
	nc, js := eventstest.ConnectJS(t, link.URL)
	f := events.Follower{JS: js, Stream: "T", Log: zerolog.Nop(), Bridge: events.BridgeNext,
		Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{"t.>"}}}
	got, done := recordSeqs(ctx, &f)
	defer func() { cancel(); <-done }()
	var seqs []uint64
	eventstest.Eventually(t, 20*time.Second, func() bool { seqs = got(); return len(seqs) >= 75 }, "the 75 stored messages (delivered %v)", &seqs)
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("delivered seq %d as message %d, want each once in order: %v", seq, i+1, seqs)
		}
	}
	if n := nc.Stats().Reconnects; n > 0 {
		t.Errorf("the follower's connection reconnected %d times, want none: the server cut it off as too slow", n)
	}
}

// TestABridgeReadingWhenItsStreamIsFoundCreatedAgainLosesNoneOfTheNewStreamsFirstMessages: a
// follower's bridge asked for the messages after the last it delivered (3) just as the
// follower, opening the stream again, found it created again and started over from its first
// message. The answer, the new stream's messages from 4 on, came afterwards and was delivered
// as the new stream's first (Recreated, at 4), and the bridge and the consumer after it went on
// from there: the new stream's first three messages were never delivered (a DNS server missing
// the records they held until it restarted). An answer to a question asked before the follower
// started over is dropped, and the new stream is read from its first message. The stream of
// eight messages stands for the new one; startOver is what the follower does on finding it.
func TestABridgeReadingWhenItsStreamIsFoundCreatedAgainLosesNoneOfTheNewStreamsFirstMessages(t *testing.T) {
	srv := eventstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 8 {
		e, _ := events.New(events.TypeZoneChanged, "test", time.Now(), events.ZoneChanged{Zone: "demo.test."})
		if _, err := events.Publish(ctx, srv.JS, events.ZoneSubject("demo.test.", "dns-1"), e); err != nil {
			t.Fatal(err)
		}
	}
	// Every question the bridge asks is seen here as the server receives it; its answer takes
	// 300 ms more to come back.
	asked := make(chan struct{}, 64)
	sub, err := srv.Conn.Subscribe("$JS.API.DIRECT.GET."+events.StreamDNS, func(*nats.Msg) {
		select {
		case asked <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	link := eventstest.NewSlowLink(t, srv.URL)
	link.Delay(0, 300*time.Millisecond)
	nc, _ := eventstest.ConnectJS(t, link.URL)
	var mu sync.Mutex
	var seqs []uint64
	var recreated []bool
	startOver, stop := events.BridgeNextAfter(ctx, nc, events.StreamDNS, events.SubjectDNS, 3, func(d events.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if d.Msg != nil || d.Recreated {
			seqs, recreated = append(seqs, d.Seq), append(recreated, d.Recreated)
		}
	})
	defer stop()
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the bridge asked nothing within 5 s")
	}
	startOver()
	eventstest.Eventually(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(seqs, 8) }, "the stream's last message")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6, 7, 8}) || !slices.Equal(recreated, []bool{true, false, false, false, false, false, false, false}) {
		t.Errorf("delivered %v recreated %v, want the new stream's [1 2 3 4 5 6 7 8], the first recreated", seqs, recreated)
	}
}
