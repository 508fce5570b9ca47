package decider

import (
	"fmt"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestTheWireCarriesNoEdgeListenerBatchesToTheDecider: the decider listens to the endpoints'
// batches and to results published alone; the batches of edge-listener results (a third of all
// results, which the controller follows) never reach its connection.
func TestTheWireCarriesNoEdgeListenerBatchesToTheDecider(t *testing.T) {
	srv := eventstest.Start(t)
	nc := eventstest.Connect(t, srv.URL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	heard := make(chan heardMsg, 16)
	stop, _, err := listen(js, heard)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	send := func(subject, id string) {
		m := nats.NewMsg(subject)
		m.Data = []byte("{}")
		m.Header.Set(jetstream.MsgIDHeader, id)
		if err := srv.Conn.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	send(events.EdgeProbeBatchSubject("eu", "p1"), "edges")
	send(events.ProbeBatchSubject("eu", "p1"), "endpoints")
	send(events.ProbeSubject("eu", "shop", "west", "w1"), "alone")
	send(events.ProbeSubject("eu", "shop", events.EdgeProbePool, "edge-1"), "edge alone")
	var got []string
	for len(got) < 3 {
		select {
		case m := <-heard:
			got = append(got, m.key.id)
		case <-time.After(5 * time.Second):
			t.Fatalf("heard %q, want the endpoints' batch and both results published alone", got)
		}
	}
	if want := []string{"endpoints", "alone", "edge alone"}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("heard %q, want %q", got, want)
	}
	// Every message published went out before the last one heard: the connection received the
	// three, not the edges' batch.
	if in := nc.Stats().InMsgs; in != 3 {
		t.Errorf("the decider's connection received %d messages, want 3", in)
	}
}

// TestEveryResultTheConnectionReceivedIsHeardOnceTheListenerIsSynced: a burst of results is
// published and the decider's connection has received them all (its ping answered after them);
// once the listener is synced, every one waits in the loop's channel, in the order published.
// STATE's delivery of an override stored after a result reaches the connection after the result
// does, and the override waits for the results heard by then: before, the listener's goroutine
// could still hold the result when the loop took the override, which then came first.
func TestEveryResultTheConnectionReceivedIsHeardOnceTheListenerIsSynced(t *testing.T) {
	srv := eventstest.Start(t)
	nc := eventstest.Connect(t, srv.URL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	heard := make(chan heardMsg, wireBuffer)
	stop, sync, err := listen(js, heard)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := nats.NewMsg(events.ProbeSubject("eu", "shop", "west", "w1"))
		m.Data = []byte("{}")
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(i))
		if err := srv.Conn.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	// The server handled the publishes, then answers the decider's ping after sending them.
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	sync()
	if len(heard) != n {
		t.Fatalf("%d results wait in the loop's channel once synced, want the %d the connection received", len(heard), n)
	}
	for i := range n {
		if m := <-heard; m.key.id != fmt.Sprint(i) {
			t.Fatalf("result %d heard as %s: want them in the order published", i, m.key.id)
		}
	}
}
