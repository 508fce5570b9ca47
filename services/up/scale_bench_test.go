package up_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// scaleConfig is a configuration of apps × pools × endpoints TCP endpoints, every app behind an
// edge, as YAML.
func scaleConfig(apps, pools, endpoints int) []byte {
	var b strings.Builder
	b.WriteString("zones: [{name: scale.test}]\napps:\n")
	for a := range apps {
		fmt.Fprintf(&b, "  - name: app%d\n    fqdn: app%d.scale.test\n    check: {type: tcp, interval: 1s, fall: 3, rise: 2}\n    pools:\n", a, a)
		for p := range pools {
			fmt.Fprintf(&b, "      - name: p%d\n        endpoints:\n", p)
			for e := range endpoints {
				fmt.Fprintf(&b, "          - {address: \"10.%d.%d.%d:80\"}\n", p, a/250, (a%250)*endpoints/10+e+1)
			}
		}
	}
	// One edge fronts every app: each app's route is a message of its own.
	b.WriteString("edges:\n  - name: edge-0\n    region: eu\n    hostname: edge-0.scale.test\n    address: 10.255.0.1\n    apps:\n")
	for a := range apps {
		fmt.Fprintf(&b, "      - {app: app%d, pool: p0, listen: \"127.0.0.1:%d\"}\n", a, 1024+a)
	}
	return []byte(b.String())
}

// BenchmarkConfigScale loads, validates and starts a configuration of 100,000 endpoints (10,000
// apps of 2 pools of 5): the time to parse and validate it, then for each role the time until
// it serves (the decider live, the DNS server answering, the controller's routes stored)
// and the heap it holds per endpoint. The target: everything in under 10 s.
func BenchmarkConfigScale(b *testing.B) {
	const apps, pools, endpoints = 10000, 2, 5
	n := apps * pools * endpoints
	doc := scaleConfig(apps, pools, endpoints)
	for range b.N {
		srv := eventstest.Start(b)
		ctx, cancel := context.WithCancel(context.Background())
		h := heapInUse()
		start := time.Now()
		cfg, err := config.Parse("scale.yaml", doc)
		if err != nil {
			b.Fatal(err)
		}
		parsed := time.Since(start)
		base := heapInUse() - h
		log := zerolog.Nop()

		// Each role is started alone and measured once it serves: the DNS server, the controller,
		// then the decider. The total includes the collections that measure the heap.
		done := make(chan error, 3)
		t0, h0 := time.Now(), heapInUse()
		dnsSrv, err := dnsupdater.New(dnsupdater.Options{JS: srv.JS, Config: cfg, Addr: "127.0.0.1:0", Name: "dns-scale", Log: log})
		if err != nil {
			b.Fatal(err)
		}
		go func() { done <- dnsSrv.Run(ctx) }()
		for firstA(dnsSrv.Addr(), "app9999.scale.test.") == "" {
			time.Sleep(time.Millisecond)
		}
		dnsUp, dnsHeap := time.Since(t0), heapInUse()-h0

		t0, h0 = time.Now(), heapInUse()
		routes := srv.Stream(b, events.StreamRoutes)
		go func() {
			done <- controller.Run(ctx, controller.Options{JS: srv.JS, Config: cfg, Name: "controller-scale", Log: log})
		}()
		for {
			info, err := routes.Info(ctx)
			if err == nil && info.State.Msgs >= uint64(apps) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		controllerUp, controllerHeap := time.Since(t0), heapInUse()-h0

		var stats decider.Stats
		t0, h0 = time.Now(), heapInUse()
		go func() {
			done <- decider.Run(ctx, decider.Options{JS: srv.JS, Config: cfg, Name: "decider-scale", Log: log, Stats: &stats})
		}()
		for !stats.Live.Load() {
			time.Sleep(time.Millisecond) // polling a start-up, in a benchmark
		}
		deciderUp, deciderHeap := time.Since(t0), heapInUse()-h0
		total := time.Since(start)

		b.Logf("%d endpoints: parse and validate %s (config heap %d B/endpoint); decider live in %s, %d B/endpoint; "+
			"DNS answering in %s, %d B/endpoint; controller's %d routes in %s, %d B/endpoint; all in %s",
			n, parsed.Round(time.Millisecond), int64(base)/int64(n), deciderUp.Round(time.Millisecond), deciderHeap/int64(n),
			dnsUp.Round(time.Millisecond), dnsHeap/int64(n), apps, controllerUp.Round(time.Millisecond), controllerHeap/int64(n),
			total.Round(time.Millisecond))
		b.ReportMetric(total.Seconds(), "start-s")
		b.ReportMetric(float64(deciderHeap)/float64(n), "decider-B/endpoint")
		b.ReportMetric(float64(dnsHeap)/float64(n), "dns-B/endpoint")
		b.ReportMetric(float64(controllerHeap)/float64(n), "controller-B/endpoint")
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// firstA is the first A record the server answers for name, or "".
func firstA(addr, name string) string {
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.Exchange(m, addr)
	if err != nil || len(r.Answer) == 0 {
		return ""
	}
	if a, ok := r.Answer[0].(*dns.A); ok {
		return a.A.String()
	}
	return ""
}
