package dnsupdater

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestANewConfigurationTakesEffectWithoutARestartOrAFailedQuery(t *testing.T) {
	js := eventstest.Start(t)
	configs := make(chan *config.Config, 1)
	srv, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2, Configs: configs})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns server", srv.Run)
	addr := srv.Addr()
	a := func(name string) []string {
		r := ask(t, addr, "udp", name, dns.TypeA)
		var out []string
		for _, rr := range r.Answer {
			if x, ok := rr.(*dns.A); ok {
				out = append(out, x.A.String())
			}
		}
		return out
	}
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(a("shop.demo.test."), []string{"127.0.0.11"}) }, "shop answered")
	before := serial(t, addr)

	// A client queries throughout; every query must be answered.
	var failed, answered atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := &dns.Client{Net: "udp", Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("shop.demo.test.", dns.TypeA)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r, _, err := c.Exchange(m, addr); err != nil || r.Rcode != dns.RcodeSuccess {
				failed.Add(1)
			} else {
				answered.Add(1)
			}
		}
	}()
	eventstest.Eventually(t, time.Second, func() bool { return answered.Load() > 0 }, "the client's first answer")

	// The next version removes shop's us-west pool, adds an app and changes a static record.
	next := strings.Replace(demoConfig, "      - name: us-west\n        endpoints: [{address: \"127.0.0.11:8081\"}]\n", "", 1) +
		"  - name: blog\n    fqdn: blog.demo.test\n    pools: [{name: main, endpoints: [{address: \"127.0.0.13:80\"}]}]\n"
	next = strings.Replace(next, "  - name: demo.test\n", "  - name: demo.test\n    records: [\"static 300 IN A 192.0.2.1\"]\n", 1)
	configs <- eventstest.Config(t, next)
	eventstest.Eventually(t, time.Second, func() bool {
		return slices.Equal(a("shop.demo.test."), []string{"127.0.0.12"}) && slices.Equal(a("blog.demo.test."), []string{"127.0.0.13"}) &&
			slices.Equal(a("static.demo.test."), []string{"192.0.2.1"})
	}, "the new configuration answered within 1s")
	if after := serial(t, addr); !serialAfter(after, before) {
		t.Errorf("serial %d after the change, want later than %d", after, before)
	}
	close(stop)
	<-done
	if failed.Load() != 0 || answered.Load() == 0 {
		t.Errorf("%d queries failed and %d were answered while the configuration changed, want none failed", failed.Load(), answered.Load())
	}
}
