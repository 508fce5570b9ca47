package up_test

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/up"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
)

func TestAnAppAppliedToARunningStackIsProbedWithinOneInterval(t *testing.T) {
	st, west, east := slice(t)
	waitAnswer(t, st, host(west.Addr()), 5*time.Second, "at start")
	nc, js := stacktest.Connect(t, st)
	active, err := config.Active(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	doc := active.Document + `  - name: blog
    fqdn: blog.demo.test
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}
    pools: [{name: main, endpoints: [{address: "` + east.Addr() + `"}]}]
`
	results := make(chan time.Time, 16)
	sub, err := nc.Subscribe("detour.probe.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"app":"blog"`) {
			select {
			case results <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	if _, _, err := config.Apply(context.Background(), js, "next.yaml", []byte(doc), config.ApplyOptions{By: "test", Expect: &active.Number}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-results:
		t.Logf("blog's first check %s after the apply", at.Sub(applied).Round(time.Millisecond))
		if at.Sub(applied) > 250*time.Millisecond+time.Second {
			t.Errorf("blog first checked %s after the apply, want within one interval (+1s)", at.Sub(applied))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blog was not checked within 5s of its apply")
	}
}

func TestAnAppliedVersionTakesEffectWithinOneIntervalWithNoFailedQuery(t *testing.T) {
	st, west, east := slice(t)
	waitAnswer(t, st, host(west.Addr()), 5*time.Second, "at start")
	_, js := stacktest.Connect(t, st)
	active, err := config.Active(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}

	// A client asks for shop throughout.
	var failed, answered atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c := &dns.Client{Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("shop.demo.test.", dns.TypeA)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r, _, err := c.Exchange(m, st.DNSAddr); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				failed.Add(1)
			} else {
				answered.Add(1)
			}
		}
	}()

	// The next version removes shop's west pool, doubles the interval and adds an app.
	westPool := "      - name: west\n        endpoints: [{address: \"" + west.Addr() + "\"}]\n"
	if !strings.Contains(active.Document, westPool) {
		t.Fatalf("the active document lacks %q:\n%s", westPool, active.Document)
	}
	doc := strings.Replace(active.Document, westPool, "", 1)
	doc = strings.Replace(doc, "interval: 250ms", "interval: 500ms", 1) + `  - name: blog
    fqdn: blog.demo.test
    check: {type: http, path: /healthz, interval: 250ms, timeout: 200ms}
    pools: [{name: main, endpoints: [{address: "` + east.Addr() + `"}]}]
`
	applied := time.Now()
	if _, _, err := config.Apply(context.Background(), js, "next.yaml", []byte(doc), config.ApplyOptions{By: "test", Expect: &active.Number}); err != nil {
		t.Fatal(err)
	}
	within := interval + time.Second // one (old) interval, and scheduling slack
	took := waitAnswer(t, st, host(east.Addr()), within, "shop without its west pool")
	t.Logf("shop answered east %s after the apply", took.Round(time.Millisecond))
	var blog []string
	eventstest.Eventually(t, within, func() bool {
		m := new(dns.Msg)
		m.SetQuestion("blog.demo.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, st.DNSAddr)
		blog = nil
		if err == nil {
			for _, rr := range r.Answer {
				if a, ok := rr.(*dns.A); ok {
					blog = append(blog, a.A.String())
				}
			}
		}
		return len(blog) == 1 && blog[0] == host(east.Addr())
	}, "blog answered: %v", &blog)
	t.Logf("blog answered %s after the apply", time.Since(applied).Round(time.Millisecond))

	// blog is decided too: its backend failing takes it down like any app.
	east.Close()
	eventstest.Eventually(t, interval*3+time.Second, func() bool {
		for _, tr := range transitions(t, js)["endpoint main"] {
			if tr == "down" {
				return true
			}
		}
		return false
	}, "blog's endpoint decided down after its backend died")
	close(stop)
	<-done
	t.Logf("%d queries answered, %d failed", answered.Load(), failed.Load())
	if failed.Load() != 0 || answered.Load() == 0 {
		t.Errorf("%d queries failed, %d answered while the configuration changed; want none failed", failed.Load(), answered.Load())
	}
}

func TestTheConfigFileIsAppliedWhenItChangesAndABadOneIsRefusedWhole(t *testing.T) {
	var path string
	reload := make(chan struct{}) // a send returns once the watcher took it: after the last one's work
	st, _, east := slice(t, func(o *up.Options) { path, o.Reload = o.ConfigPath, reload })
	_, js := stacktest.Connect(t, st)
	before, err := config.History(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(path+".new", []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
		reload <- struct{}{}
	}
	// A bad file: refused whole.
	write(string(orig) + "  - name: blog\n    fqdn: blog.demo.test\n    colour: blue\n    pools: [{name: main, endpoints: [{address: \"10.0.0.1\"}]}]\n")
	// Then a good one: applied as the very next version.
	good := string(orig) + "  - name: blog\n    fqdn: blog.demo.test\n    pools: [{name: main, endpoints: [{address: \"" + east.Addr() + "\"}]}]\n"
	write(good)
	reload <- struct{}{} // returns once the good file was applied
	var after []config.Version
	eventstest.Eventually(t, 5*time.Second, func() bool {
		after, err = config.History(context.Background(), js)
		return err == nil && len(after) > len(before)
	}, "a new version from the file")
	if len(after) != len(before)+1 {
		t.Fatalf("%d versions after the two writes, want exactly one more than %d: the bad file must apply nothing", len(after), len(before))
	}
	v, err := config.Active(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	if v.Document != good || v.By != "detour-up" {
		t.Errorf("active version %d by %s is not the good file", v.Number, v.By)
	}
	eventstest.Eventually(t, time.Second, func() bool {
		m := new(dns.Msg)
		m.SetQuestion("blog.demo.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, st.DNSAddr)
		return err == nil && len(r.Answer) == 1
	}, "blog answered")
}

func TestTheStreamsBoundsOfAChangedConfigFileAreApplied(t *testing.T) {
	var path string
	reload := make(chan struct{}) // a send returns once the watcher took it: after the last one's work
	st, _, _ := slice(t, func(o *up.Options) { path, o.Reload = o.ConfigPath, reload })
	_, js := stacktest.Connect(t, st)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(orig, "streams:\n  probes: {max_age: 2h, max_bytes: 96MiB}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the changed file was applied
	s, err := js.Stream(context.Background(), events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 2*time.Hour || c.MaxBytes != 96<<20 {
		t.Errorf("after the file set streams.probes to 2h and 96MiB, PROBES keeps %s within %s", c.MaxAge, config.ByteSize(c.MaxBytes))
	}
}

func TestAChangedConfigFileWhoseBoundsJetStreamRefusesAppliesNothing(t *testing.T) {
	var path string
	reload := make(chan struct{}) // a send returns once the watcher took it: after the last one's work
	st, _, _ := slice(t, func(o *up.Options) { path, o.Reload = o.ConfigPath, reload })
	_, js := stacktest.Connect(t, st)
	before, err := config.Active(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(orig, "streams:\n  probes: {max_bytes: 8000TiB}\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the changed file was handled
	if after, err := config.Active(context.Background(), js); err != nil || after.Number != before.Number {
		t.Errorf("after a file whose PROBES bound JetStream cannot reserve, version %d is active (%v), want %d still", after.Number, err, before.Number)
	}
}
