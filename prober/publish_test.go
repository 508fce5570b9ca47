package prober

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
)

// startBatching runs a publisher gathering results every 2 ms on a clock the test moves, until
// the test ends; stored counts the messages PROBES holds.
func startBatching(t *testing.T) (srv *eventstest.Server, p *publisher, clock *fakeClock, stored func() uint64) {
	srv = eventstest.Start(t)
	clock = &fakeClock{now: time.Unix(1_700_000_000, 0)}
	p = newPublisher(srv.JS, "eu", "p1", 2*time.Millisecond, clock)
	ctx, cancel := context.WithCancel(context.Background())
	go p.batches(ctx)
	t.Cleanup(func() { cancel(); <-p.done })
	return srv, p, clock, func() uint64 {
		info, err := srv.Stream(t, events.StreamProbes).Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
}

func TestAQuietPublisherSendsAtOnceAndABusyOneGathersTheWindowIntoOneBatch(t *testing.T) {
	srv, p, clock, stored := startBatching(t)
	result := func(endpoint string) events.ProbeResult { return okResult(clock, "west", endpoint) }

	p.publish(result("a")) // idle: out at once, alone
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 1 }, "the first result stored at once")
	p.publish(result("b")) // within the window after a send: gathered
	p.publish(result("c"))
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the window's timer set")
	clock.advance(2 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 2 }, "the window's results stored as one message")
	clock.advance(2 * time.Millisecond)
	p.publish(result("d")) // a window after the last send: out at once again
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 3 }, "the next result stored at once")

	got := results(t, srv.JS)
	if len(got) != 4 {
		t.Fatalf("%d results stored, want 4", len(got))
	}
	st := srv.Stream(t, events.StreamProbes)
	m, err := st.GetMsg(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != events.ProbeBatchSubject("eu", "p1") || got[1].Endpoint != "b" || got[2].Endpoint != "c" {
		t.Errorf("second message on %s holds %s and %s, want the batch of b and c", m.Subject, got[1].Endpoint, got[2].Endpoint)
	}
	for _, seq := range []uint64{1, 3} {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := events.Decode(m.Data); e.Type != events.TypeProbeCompleted {
			t.Errorf("message %d is a %s on %s, want a lone result", seq, e.Type, m.Subject)
		}
	}
}

func TestAFullBatchGoesOutWithoutWaitingForItsWindowToEnd(t *testing.T) {
	srv, p, clock, stored := startBatching(t)
	p.publish(okResult(clock, "west", "first")) // idle: out at once, alone
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 1 }, "the first result stored at once")
	// Two batches' worth and a few within the window the first opened; the clock stands still.
	for i := range 2*maxBatch + 3 {
		p.publish(okResult(clock, "west", fmt.Sprintf("e%d", i)))
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 3 }, "two full batches stored before the window ends")
	if got := len(results(t, srv.JS)); got != 1+2*maxBatch {
		t.Fatalf("%d results stored before the window ended, want %d", got, 1+2*maxBatch)
	}
	clock.advance(2 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 4 }, "the rest stored when the window ends")
	if got := len(results(t, srv.JS)); got != 4+2*maxBatch {
		t.Errorf("%d results stored, want %d", got, 4+2*maxBatch)
	}
}

func TestEdgeListenerResultsGoOutBatchedApartFromTheEndpointsOnes(t *testing.T) {
	srv, p, clock, stored := startBatching(t)
	result := func(pool, endpoint string) events.ProbeResult { return okResult(clock, pool, endpoint) }
	p.publish(result("west", "a")) // idle: out at once, alone
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 1 }, "the first result stored at once")
	for _, c := range []events.ProbeResult{result(events.EdgeProbePool, "edge-1"), result("west", "b"), result(events.EdgeProbePool, "edge-2"), result("west", "c")} {
		p.publish(c)
	}
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the window's timer set")
	clock.advance(2 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 3 }, "the window's results stored as two batches")

	got := storedBySubject(t, srv, 2, 3, func(data []byte) (string, error) {
		rs, err := events.DecodeProbes(data)
		var eps string
		for _, r := range rs {
			eps += r.Endpoint + " "
		}
		return eps, err
	})
	want := map[string]string{
		events.ProbeBatchSubject("eu", "p1"):     "b c ",
		events.EdgeProbeBatchSubject("eu", "p1"): "edge-1 edge-2 ",
	}
	if !maps.Equal(got, want) {
		t.Errorf("batches stored %v, want %v", got, want)
	}
}

// TestAWindowsOneEdgeListenerResultGoesOutAsABatchOfOne: alone on its own subject it would reach
// the deciders (detour.probe.*.*.*.*); as a batch of one it reaches only the controller. An
// endpoint's one result of a window still goes out alone.
func TestAWindowsOneEdgeListenerResultGoesOutAsABatchOfOne(t *testing.T) {
	srv, p, clock, stored := startBatching(t)
	result := func(pool, endpoint string) events.ProbeResult { return okResult(clock, pool, endpoint) }
	p.publish(result("west", "a")) // idle: out at once, alone
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 1 }, "the first result stored at once")
	p.publish(result(events.EdgeProbePool, "edge-1"))
	p.publish(result("west", "b"))
	eventstest.Eventually(t, 5*time.Second, clock.armed, "the window's timer set")
	clock.advance(2 * time.Millisecond)
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 3 }, "the window's two results stored")
	got := storedBySubject(t, srv, 2, 3, func(data []byte) (string, error) {
		e, err := events.Decode(data)
		return e.Type, err
	})
	want := map[string]string{
		events.ProbeSubject("eu", "shop", "west", "b"): events.TypeProbeCompleted,
		events.EdgeProbeBatchSubject("eu", "p1"):       events.TypeProbeBatchCompleted,
	}
	if !maps.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}

func TestResultsQueuedWhenThePublisherStopsAreStoredInBatchesPROBESTakes(t *testing.T) {
	srv := eventstest.Start(t)
	const queued = 3 * maxBatch
	p := newPublisher(srv.JS, "eu", "p1", 2*time.Millisecond, &fakeClock{now: time.Unix(1_700_000_000, 0)})
	// A busy prober stopping: thousands of results a second, each with a long error, still queued.
	for i := range queued {
		ep := fmt.Sprintf("e%d", i)
		p.publish(events.ProbeResult{At: time.Unix(1_700_000_000, 0), App: "shop", Pool: "west", Endpoint: ep,
			Address: "127.0.0.1:1", Region: "eu", Prober: "p1", Check: "tcp", Window: 1_700_000_000, Error: strings.Repeat("connection refused ", 20)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.batches(ctx)
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	p.flush(fctx)
	if got := len(results(t, srv.JS)); got != queued {
		t.Errorf("%d of the %d results queued at the stop stored", got, queued)
	}
}

// storedBySubject reads PROBES' messages first to last and returns what read makes of each, by
// subject.
func storedBySubject(t *testing.T, srv *eventstest.Server, first, last uint64, read func([]byte) (string, error)) map[string]string {
	t.Helper()
	st := srv.Stream(t, events.StreamProbes)
	got := map[string]string{}
	for seq := first; seq <= last; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		v, err := read(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[m.Subject] = v
	}
	return got
}

// okResult is a passing tcp result of shop's endpoint in pool, at clock's time, as prober p1 in
// eu completes it.
func okResult(clock *fakeClock, pool, endpoint string) events.ProbeResult {
	return events.ProbeResult{At: clock.Now(), App: "shop", Pool: pool, Endpoint: endpoint,
		Address: "127.0.0.1:1", Region: "eu", Prober: "p1", Check: "tcp", Window: Window(clock.Now(), time.Second), OK: true}
}

// TestEndpointsAnsweringGarbageStillHaveTheirResultsStored: net/http quotes in its error the
// line it could not read, up to its 64 KiB bound on an answer's headers, and JSON escapes it
// further. However much a peer sends, a full batch of such results stays within PROBES' bound
// on a message, so hostile endpoints (or a middlebox answering for all of them) cost no
// endpoint of the window its result.
func TestEndpointsAnsweringGarbageStillHaveTheirResultsStored(t *testing.T) {
	addr, _ := rawServer(t, "127.0.0.1:0", writeThen(strings.Repeat("\x00", 60<<10)+"\r\n\r\n", false))
	garbage := Probe(context.Background(), target(t, "http", addr, nil), testCredentialDirs(t))
	if garbage.OK || garbage.Class != ClassProtocol || !strings.Contains(garbage.Err, "malformed HTTP response") {
		t.Fatalf("a check answered with garbage: ok %v class %q error %.200q", garbage.OK, garbage.Class, garbage.Err)
	}
	srv, p, clock, stored := startBatching(t)
	p.publish(okResult(clock, "west", "first")) // idle: out at once, alone
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 1 }, "the first result stored at once")
	p.publish(okResult(clock, "west", "healthy"))
	for i := range maxBatch - 1 { // a full batch: out at once
		c := okResult(clock, "west", fmt.Sprintf("garbage%d", i))
		c.Check, c.OK, c.ErrorClass, c.Error = "http", false, garbage.Class, garbage.Err
		p.publish(c)
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return stored() == 2 }, "the batch of the healthy endpoint and %d answering garbage stored", maxBatch-1)
	if got := len(results(t, srv.JS)); got != 1+maxBatch {
		t.Errorf("%d results stored, want %d", got, 1+maxBatch)
	}
}

// A result's id is drawn for it, not computed from its region, check and window, which anyone
// can: two probers of a region that ran one window's check (a hand-over) publish two results
// that PROBES stores both, each naming the window, under its own Nats-Msg-Id, the id of its
// envelope and result.
func TestAResultsIDIsItsOwnAndItNamesItsWindow(t *testing.T) {
	srv := eventstest.Start(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	for _, name := range []string{"p1", "p2"} {
		p := newPublisher(srv.JS, "eu", name, -1, clock)
		r := okResult(clock, "west", "a")
		r.Prober = name
		p.single(r)
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p.flush(fctx)
		cancel()
	}
	st := srv.Stream(t, events.StreamProbes)
	ids := map[string]bool{}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("PROBES holds %d of the 2 results: %v", seq-1, err)
		}
		rs, err := events.DecodeProbes(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if id == "" || id != e.ID || id != rs[0].ID {
			t.Errorf("message %d: Nats-Msg-Id %q, envelope id %q, result id %q, want one id", seq, id, e.ID, rs[0].ID)
		}
		if want := Window(clock.Now(), time.Second); rs[0].Window != want {
			t.Errorf("message %d names window %d, want %d", seq, rs[0].Window, want)
		}
		ids[id] = true
	}
	if len(ids) != 2 {
		t.Errorf("the two probers' results of one window have ids %v, want two", ids)
	}
}
