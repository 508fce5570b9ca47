package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// hungStream is stream T of three replicas, one of which hangs, as a reader connected to its
// leader sees it.
type hungStream struct {
	st jetstream.Stream
	js jetstream.JetStream
	// subjects are t.0, t.1, …; stored the event each holds, which every replica held before
	// one hung.
	subjects []string
	stored   []events.Envelope
	// hung is the index of the node that hangs.
	hung int
	// cluster is T's cluster; url the address of T's leader, which the reader connects to.
	cluster *eventstest.Cluster
	url     string
}

// startHungStream creates T, stores one event on each of n subjects, and hangs a replica that
// leads neither T nor the cluster's metadata.
func startHungStream(t *testing.T, n int) hungStream {
	t.Helper()
	h := startHungStreamAwake(t, n)
	h.cluster.Silence(h.hung)
	return h
}

// startHungStreamAwake is startHungStream but for the hanging: h.cluster.Silence(h.hung) does it.
func startHungStreamAwake(t *testing.T, n int) hungStream {
	t.Helper()
	c := eventstest.StartCluster(t, 3)
	ctx := context.Background()
	st := createT(t, c, 0)
	// The reader connects to the stream's leader; a replica that leads neither the stream nor
	// the cluster's metadata hangs.
	leader, hung, _ := c.Replicas(t, st)
	h := hungStream{hung: hung, cluster: c, url: c.URLs[leader]}
	_, h.js = connectAs(t, h.url, "t")
	for i := range n {
		e, err := events.New(events.TypeRouteComputed, "test", time.Now(), struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		h.subjects, h.stored = append(h.subjects, fmt.Sprintf("t.%d", i)), append(h.stored, e)
		if _, err := events.Publish(ctx, h.js, h.subjects[i], e); err != nil {
			t.Fatal(err)
		}
	}
	c.DirectGets(t, "T")
	// Every replica holds every message before one hangs.
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return c.Held(0, "T") == uint64(n) && c.Held(1, "T") == uint64(n) && c.Held(2, "T") == uint64(n)
	}, "every replica holding the %d messages", n)
	var err error
	eventstest.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		h.st, err = h.js.Stream(ctx, "T")
		return err == nil
	}, "stream T's info: %v", &err)
	return h
}

// TestLastOfReadsEverySubjectSoonWhileAReplicaHangs: a controller starting reads the last route
// of each app of each edge (LastOf) while one of ROUTES's three replicas hangs. NATS hands each
// direct get to a replica at random, the hung one included, and each read that drew it waited
// nats.go's 5 s: 200 subjects took about 20 s, and a controller of a few thousand routes started
// minutes late, with no edge liveness meanwhile. Each read is answered by the stream's leader,
// which the hung replica does not delay.
func TestLastOfReadsEverySubjectSoonWhileAReplicaHangs(t *testing.T) {
	const subjects = 200
	h := startHungStream(t, subjects)
	start, read := time.Now(), 0
	err := events.LastOf(context.Background(), h.js, "T", h.subjects, func(string, uint64, events.Envelope) { read++ })
	took := time.Since(start)
	t.Logf("%d of %d subjects read in %s with the replica on n%d hung", read, subjects, took.Round(time.Millisecond), h.hung)
	if err != nil || read != subjects {
		t.Errorf("read %d of %d subjects (%v), want every one", read, subjects, err)
	}
	if limit := 3 * time.Second; took > limit {
		t.Errorf("%d subjects read in %s, want within %s: reads waited for the hung replica", subjects, took.Round(time.Millisecond), limit)
	}
}

// TestLastReadsSoonOneAfterAnotherWhileAReplicaHangs: the decider re-reading a subject after a
// conflict, the controller after another replica's append, an override or a drill reads one last
// message at a time (Last) while one of the stream's three replicas hangs. Each read that NATS
// handed to the hung replica waited for the caller's bound: 500 ms of the decider's loop, or
// nats.go's 5 s. Fifty reads one after another take 3 s at most, every one answered (0.7–1.6 s
// measured: a read that draws the hung replica is asked again 50 ms later).
func TestLastReadsSoonOneAfterAnotherWhileAReplicaHangs(t *testing.T) {
	const reads = 50
	h := startHungStream(t, reads)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	for i, subject := range h.subjects {
		e, seq, ok, err := events.Last(ctx, h.st, subject)
		if err != nil || !ok || e.ID != h.stored[i].ID || seq != uint64(i+1) {
			t.Fatalf("read %d of %d, after %s: Last(%s) = %s, seq %d, %t, %v; want %s, seq %d, within 3 s with the replica on n%d hung",
				i+1, reads, time.Since(start).Round(time.Millisecond), subject, e.ID, seq, ok, err, h.stored[i].ID, i+1, h.hung)
		}
	}
	t.Logf("%d reads in %s with the replica on n%d hung", reads, time.Since(start).Round(time.Millisecond), h.hung)
}

// TestPreemptedTellsSoonOneAfterAnotherWhileAReplicaHangs: a decider whose append was
// acknowledged as a duplicate reads the message that holds its id (Preempted) while one of
// STATE's three replicas hangs. A read that NATS handed to the hung replica waited out the
// decider's 500 ms, and then took the acknowledgement as the append's, though the message held
// another subject: the transition was not stored, and the decider did not know it. Fifty
// duplicates, each of a message on another subject, are each told preempted, within 3 s in all
// (0.7–1.4 s measured).
func TestPreemptedTellsSoonOneAfterAnotherWhileAReplicaHangs(t *testing.T) {
	const appends = 50
	h := startHungStream(t, appends)
	ctx := context.Background()
	acks := make([]*jetstream.PubAck, appends)
	for i, e := range h.stored {
		ack, err := events.Publish(ctx, h.js, "t.other."+h.subjects[i], e)
		if err != nil || !ack.Duplicate {
			t.Fatalf("the copy of %s's event on another subject acknowledged %+v, %v; want a duplicate", h.subjects[i], ack, err)
		}
		acks[i] = ack
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	for i, e := range h.stored {
		subject := "t.other." + h.subjects[i]
		if err := events.Preempted(ctx, h.st, subject, e, acks[i]); !errors.Is(err, events.ErrPreempted) {
			t.Fatalf("append %d of %d, after %s: Preempted = %v, want ErrPreempted within 3 s with the replica on n%d hung",
				i+1, appends, time.Since(start).Round(time.Millisecond), err, h.hung)
		}
	}
	t.Logf("%d duplicates told preempted in %s with the replica on n%d hung", appends, time.Since(start).Round(time.Millisecond), h.hung)
}

// TestLastLeavesNoReadWaitingOnceItAnswersWhileAReplicaHangs: a caller of Last that allows
// 10 s (an operator's command, a drill) reads while one of the stream's three replicas hangs.
// Each read that drew the hung replica is asked again, and answered by another; the copy still
// waiting on the hung one must end with the read, not with the caller's 10 s: it waited there,
// a goroutine and a NATS request each, so that fifty reads left about twenty behind them, and a
// reader calling Last in a loop piled up more with every read.
func TestLastLeavesNoReadWaitingOnceItAnswersWhileAReplicaHangs(t *testing.T) {
	const reads = 50
	h := startHungStream(t, reads)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, subject := range h.subjects {
		if _, _, ok, err := events.Last(ctx, h.st, subject); err != nil || !ok {
			t.Fatalf("read %d of %d: Last(%s) = %t, %v; want its event", i+1, reads, subject, ok, err)
		}
	}
	waiting := 0
	eventstest.Eventually(t, 2*time.Second, func() bool {
		waiting = readsWaiting()
		return waiting == 0
	}, "the copies of the reads that drew the hung replica on n%d ending with their reads; %d still wait on it", h.hung, &waiting)
}

// readsWaiting counts the goroutines of this process that run a copy of a hedged read.
func readsWaiting() int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	n := 0
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if strings.Contains(g, "events.ask[") {
			n++
		}
	}
	return n
}

// TestPreemptedTellsAPreemptionWhileAReplicaLags: a writer whose append was acknowledged as a
// duplicate reads the message that holds its id (Preempted) while one of the stream's three
// replicas, cut from the leader (a partition between two nodes), has not stored it yet and
// still answers direct gets by way of the third node. Its "no message found" is no answer: the
// leader acknowledged that sequence. Taken for one, as an unreadable message is, the
// acknowledgement stood, and a transition whose id another writer stored first on another
// subject was taken as stored, about one read in three.
func TestPreemptedTellsAPreemptionWhileAReplicaLags(t *testing.T) {
	const appends = 30
	l := startLaggingStream(t)
	ctx := context.Background()
	start := time.Now()
	for i := range appends {
		e, err := events.New(events.TypeRouteComputed, "test", time.Now(), struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		first, err := events.Publish(ctx, l.js, fmt.Sprintf("t.other.%d", i), e)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := events.Publish(ctx, l.js, fmt.Sprintf("t.mine.%d", i), e)
		if err != nil || !ack.Duplicate || ack.Sequence != first.Sequence {
			t.Fatalf("the copy of %s on another subject acknowledged %+v, %v; want a duplicate of seq %d", e.ID, ack, err, first.Sequence)
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		err = events.Preempted(rctx, l.st, fmt.Sprintf("t.mine.%d", i), e, ack)
		cancel()
		if !errors.Is(err, events.ErrPreempted) {
			t.Fatalf("append %d of %d: Preempted = %v, want ErrPreempted with the replica on n%d behind (holding %d messages of %d)",
				i+1, appends, err, l.lagging, l.cluster.Held(l.lagging, "T"), first.Sequence)
		}
	}
	if n := l.cluster.Held(l.lagging, "T"); n >= appends {
		t.Fatalf("the replica on n%d holds %d messages, every one: it did not lag", l.lagging, n)
	}
	t.Logf("%d duplicates told preempted in %s with the replica on n%d behind", appends, time.Since(start).Round(time.Millisecond), l.lagging)
}

// TestLastAsksADistantClusterOnceARead: reads of one subject's last message (Last) one after
// another, from a cluster 100 ms away. A read is sent again while no copy has answered, after
// twice the last answer's round trip (see hedge), so that a distant cluster is not asked again
// before it could have answered; but each read started with no round trip known, and sent its
// copies 50 and 100 ms after the first: every read was asked three times, and a cluster slowed
// by load was asked more as it slowed. After the first, each read is asked once.
func TestLastAsksADistantClusterOnceARead(t *testing.T) {
	const reads = 20
	ns := eventstest.Start(t)
	link := eventstest.NewSlowLink(t, ns.URL)
	_, js := eventstest.ConnectJS(t, link.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, AllowDirect: true, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.TypeRouteComputed, "test", time.Now(), struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, js, "t.0", e); err != nil {
		t.Fatal(err)
	}
	watch := eventstest.Connect(t, ns.URL)
	sub, err := watch.SubscribeSync("$JS.API.DIRECT.GET.T.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	link.Delay(50*time.Millisecond, 50*time.Millisecond)
	for i := range reads {
		if _, _, ok, err := events.Last(ctx, st, "t.0"); err != nil || !ok {
			t.Fatalf("read %d of %d: %t, %v", i+1, reads, ok, err)
		}
	}
	// Every copy sent has reached the server, and been passed on to the watch, once both
	// connections' round trips are done.
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	asked, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads of a cluster 100 ms away asked it %d times", reads, asked)
	// A read's copy goes out once it waited twice the round trip measured: the first reads
	// measure none, and on a loaded machine an answer now and then takes longer than that (23
	// asks once in a full run at load 5), so a few copies more are the hedging working. Before
	// the shared clock, these reads asked 58 times.
	if asked > reads+5 {
		t.Errorf("%d reads of a cluster 100 ms away asked it %d times, want %d and at most 5 more for the first and for answers slowed by load", reads, asked, reads)
	}
}

// laggingStream is stream T of three replicas, one of which is cut from the leader and falls
// behind it, as a reader connected to the third node sees it.
type laggingStream struct {
	st      jetstream.Stream
	js      jetstream.JetStream
	cluster *eventstest.Cluster
	// lagging is the index of the node that falls behind.
	lagging int
}

// startLaggingStream creates T and cuts the routes between its leader and a replica that leads
// nothing, once each node knows the direct gets of all three.
func startLaggingStream(t *testing.T) laggingStream {
	t.Helper()
	c := eventstest.StartCluster(t, 3)
	ctx := context.Background()
	st := createT(t, c, 0)
	leader, lagging, reader := c.Replicas(t, st)
	l := laggingStream{cluster: c, lagging: lagging}
	c.DirectGets(t, "T")
	c.Cut(leader, l.lagging)
	_, l.js = connectAs(t, c.URLs[reader], "t")
	var err error
	if l.st, err = l.js.Stream(ctx, "T"); err != nil {
		t.Fatal(err)
	}
	return l
}

// createT creates stream T (subjects t.>, three replicas in memory, direct gets allowed, at most
// maxConsumers consumers, 0 for no limit) through c's node 0, trying again while the new cluster
// elects a leader for it.
func createT(t *testing.T, c *eventstest.Cluster, maxConsumers int) jetstream.Stream {
	t.Helper()
	admin, err := jetstream.New(eventstest.Connect(t, c.URLs[0]))
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	eventstest.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err = admin.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3,
			MaxConsumers: maxConsumers, AllowDirect: true, Storage: jetstream.MemoryStorage})
		return err == nil
	}, "the stream created: %v", &err)
	return st
}

// TestAReadNoReplicaAnswersSendsFewCopies: a read (Last, AnyLast, a prober's member record)
// while no replica answers at all (every node of the stream hung, JetStream stalled while NATS
// answers) is sent again while no copy has answered, as when one replica hangs; but it sent a
// copy every 50 to 200 ms for its whole bound, each a goroutine and a request waiting: a
// prober's read of its region's records, bounded by its TTL less a heartbeat, sent about 1,180
// to a cluster that could answer none. After the first few, the copies come further and further
// apart, up to a second: in 6 s, at most 20.
func TestAReadNoReplicaAnswersSendsFewCopies(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var sent atomic.Int64
	_, err := events.Hedged(ctx, func(ctx context.Context) (int, error) {
		sent.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a read no copy of which was answered: %v, want its bound's end", err)
	}
	t.Logf("a read unanswered for 6 s sent %d copies", sent.Load())
	if n := sent.Load(); n > 20 {
		t.Errorf("a read unanswered for 6 s sent %d copies, want at most 20", n)
	}
}
