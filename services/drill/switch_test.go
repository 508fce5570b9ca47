package drill_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/drill"
	"github.com/miekg/dns"
)

// slowDNS forwards every query to server after delay, on a loopback port of its own.
func slowDNS(t *testing.T, server string, delay time.Duration) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		time.Sleep(delay) // the slowness under test, not synchronisation
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, server)
		if err != nil {
			return
		}
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestASwitchIsNeverDatedBeforeTheLookThatSawIt(t *testing.T) {
	s := startStack(t)
	const delay = 150 * time.Millisecond
	o := s.options(t, `
name: slow-look
steps:
  - {fail: pool shop/west, rto: 2s}
`)
	o.DNS = []string{slowDNS(t, s.DNSAddr, delay)}
	sc, err := drill.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range append(sc.Steps, sc.Restored) {
		if !st.Pass || time.Duration(st.Switch) < delay {
			t.Errorf("%s: switched in %s (%s), but every answer takes %s to read", st.Step, st.Switch, st.Reason, delay)
		}
	}
}

// stickyDNS forwards each question to server and answers it from what it got for up to hold,
// on a loopback port of its own: a secondary that follows its primary by refreshes.
func stickyDNS(t *testing.T, server string, hold time.Duration) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type cached struct {
		r  *dns.Msg
		at time.Time
	}
	var mu sync.Mutex
	cache := map[dns.Question]cached{}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		c, ok := cache[q.Question[0]]
		mu.Unlock()
		if !ok || time.Since(c.at) > hold {
			r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, server)
			if err != nil {
				return
			}
			c = cached{r, time.Now()}
			mu.Lock()
			cache[q.Question[0]] = c
			mu.Unlock()
		}
		r := c.r.Copy()
		r.Id = q.Id
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Answers that return 11 s after the rollback, within the rto of 15 s they are scored against
// (a DNS server that follows a primary by refreshes): the return passes and the scorecard is
// recorded. The runner measured the return, and then recorded the scorecard, within 10 s of the
// rollback in all: the return failed at 10 s, and the scorecard, left no time, was not recorded,
// the run ending in "the NATS cluster did not answer within 15s" from a cluster that answered.
func TestAReturnSlowerThanTenSecondsWithinItsRTOPassesAndIsRecorded(t *testing.T) {
	s := startStack(t)
	o := s.options(t, "name: slow-back\nsteps:\n  - {fail: pool shop/west, rto: 15s}\n")
	o.DNS = []string{stickyDNS(t, s.DNSAddr, 11*time.Second)}
	sc, err := drill.Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Restored.Pass || time.Duration(sc.Restored.Switch) < 10*time.Second {
		t.Errorf("the return: pass %v in %s (%s), want a pass after 10s", sc.Restored.Pass, sc.Restored.Switch, sc.Restored.Reason)
	}
	drills, err := s.js.Stream(t.Context(), events.StreamDrills)
	if err != nil {
		t.Fatal(err)
	}
	m, err := drills.GetLastMsgForSubject(t.Context(), events.DrillSubject(sc.Drill))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := events.Decode(m.Data); err != nil || e.Type != events.TypeDrillScored {
		t.Errorf("the drill's last event is %q (%v), want its scorecard", e.Type, err)
	}
}
