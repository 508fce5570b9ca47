package events_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
)

// slowLink is a connection that reads no faster than rate bytes a second, as one through a
// link of that bandwidth does.
type slowLink struct {
	net.Conn
	rate  float64
	mu    sync.Mutex
	start time.Time
	read  float64
}

func (c *slowLink) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b[:min(len(b), 64<<10)])
	c.mu.Lock()
	if c.start.IsZero() {
		c.start = time.Now()
	}
	c.read += float64(n)
	due := c.start.Add(time.Duration(c.read / c.rate * float64(time.Second)))
	c.mu.Unlock()
	time.Sleep(time.Until(due)) // the link's bandwidth, not a wait for anything
	return n, err
}

type slowDialer struct{ rate float64 }

func (d slowDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &slowLink{Conn: c, rate: d.rate}, nil
}

// A replica reaching the cluster through a link of 48 Mbit/s (6 MiB a second), a site away,
// reads the last events of 4,096 subjects, 4 KiB each (16 MiB, a version adding 2,048
// endpoints whose transitions carry the votes of many regions): the pages of its lists take
// longer than followProbe to come through, however healthy the replica answering them. They
// are read whole, rather than each given up after followProbe while it is still coming, and sent
// again and again meanwhile (every copy another 4 MiB on the same link, queued by the server
// until it takes the connection for a slow consumer): before, the read failed every time.
func TestAnyLastOfReadsThroughASlowLink(t *testing.T) {
	ns := eventstest.Start(t)
	var subjects []string
	want := map[string]string{}
	pad := strings.Repeat("x", 4<<10)
	for i := range 4096 {
		subject := events.EndpointStateSubject("app", "pool", fmt.Sprintf("e%d", i))
		subjects = append(subjects, subject)
		e, err := events.New(events.TypeEndpointUp, "test", time.Now(), events.Transition{Reason: pad})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.PublishAsync(ns.JS, subject, e); err != nil {
			t.Fatal(err)
		}
		want[subject] = e.ID
	}
	<-ns.JS.PublishAsyncComplete()

	var cut sync.Once
	cuts := make(chan error, 1)
	nc, err := nats.Connect(ns.URL, nats.SetCustomDialer(slowDialer{rate: 6 << 20}), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { cut.Do(func() { cuts <- err }) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { cut.Do(func() { cuts <- err }) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := events.NewJetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	err = events.AnyLastOf(t.Context(), js, events.StreamState, subjects, func(subject string, _ uint64, e events.Envelope) {
		if want[subject] == e.ID {
			got++
		}
	})
	if err != nil {
		t.Errorf("read through a slow link: %v", err)
	}
	if got != len(want) {
		t.Errorf("%d subjects given their last event, want %d", got, len(want))
	}
	select {
	case err := <-cuts:
		t.Errorf("the connection failed: %v", err)
	default:
	}
}
