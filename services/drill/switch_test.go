package drill_test

import (
	"context"
	"net"
	"testing"
	"time"

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
