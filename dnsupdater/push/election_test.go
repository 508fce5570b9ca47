package push

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fakePrimary accepts every UPDATE on a loopback TCP port, answers it signed and hands it over.
func fakePrimary(t *testing.T) (string, <-chan *dns.Msg) {
	t.Helper()
	got := make(chan *dns.Msg, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	primary := &dns.Server{Listener: ln, TsigSecret: map[string]string{"detour-key.": testSecret}, MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode == dns.OpcodeUpdate {
			got <- r
		}
		m := new(dns.Msg)
		m.SetReply(r)
		if t := r.IsTsig(); t != nil {
			m.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = primary.ActivateAndServe() }()
	t.Cleanup(func() { _ = primary.Shutdown() })
	return ln.Addr().String(), got
}

// runPusher runs a pusher of zone demo.test. to push's primary, recording on js, until the test
// ends.
func runPusher(t *testing.T, push config.Push, js jetstream.JetStream) *Pusher {
	t.Helper()
	return startPusher(t, Options{Zone: "demo.test.", Push: push, JS: js, Source: "dns-test", Log: zerolog.New(zerolog.NewTestWriter(t))})
}

// startPusher runs a pusher made with o, then changed by each of with, until the test ends.
func startPusher(t *testing.T, o Options, with ...func(*Pusher)) *Pusher {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range with {
		f(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func TestPushesReachThePrimaryWhileTheDNSStreamElectsALeader(t *testing.T) {
	addr, updates := fakePrimary(t)
	ns := eventstest.Start(t)
	js := eventstest.NewElecting(ns.JS, "detour.dns.", true)
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(pushConfig, addr, testSecret)))
	if err != nil {
		t.Fatal(err)
	}
	p := runPusher(t, *cfg.Zones[0].Push, js)

	// DNS, where the pushes are recorded, has no leader: each state still reaches the primary
	// as soon as it is offered.
	js.On.Store(true)
	await := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		select {
		case <-updates:
			return time.Since(start)
		case <-time.After(10 * time.Second):
			t.Fatalf("no UPDATE of %s within 10s", what)
			return 0
		}
	}
	p.Offer(desired(t, cfg, state.NewView(), 10))
	await("the first state")
	v := state.NewView()
	down(t, v, 1, "shop", "p1", "127-0-0-11_80")
	p.Offer(desired(t, cfg, v, 11))
	if took := await("the next state"); took > time.Second {
		t.Errorf("the next state reached the primary %s after it was offered, want within 1s: the pusher waited for the DNS stream", took.Round(time.Millisecond))
	}
}
