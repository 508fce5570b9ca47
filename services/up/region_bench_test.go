package up_test

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/miekg/dns"
)

// BenchmarkRegion kills a region of N endpoints at once (N failover apps, each answering its
// own endpoint until it is down), then brings it back, on one process holding JetStream, the
// decider, the DNS server and the controller, fed probe batches as the probers of a region
// send them. Per N it prints the time from the kill (one interval before the first failing
// round) until each answer moved and each edge route changed, the DNS queries per second
// answered during the storm against the same server's static rate, transitions appended per
// second, zone versions and NOTIFYs, and the process's CPU and peak RSS. The target: every
// answer within interval × fall + 100 ms. Run it with go tool task bench:region.
func BenchmarkRegion(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			for range b.N {
				regionStorm(b, n)
			}
		})
	}
}

func regionStorm(b *testing.B, n int) {
	const interval, fall, rise = time.Second, 3, 2
	notify, notifies := fakeSecondary(b)
	r := startRegion(b, n, interval, notify)
	main := func(i int) string { return regionAddr(i).String() }
	backup := func(int) string { return "10.200.0.1" }
	r.storm(true, rise, main)
	deadline := time.Now().Add(2 * time.Minute)
	for r.stats.Transitions.Load() < uint64(n) || r.stats.PoolTransitions.Load() < uint64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("the decider did not record %d endpoints and pools up within 2 minutes", n)
		}
		time.Sleep(50 * time.Millisecond) // a benchmark's settling, not synchronisation
	}
	// Measure the static rate once the roles are idle: no stream has grown for a second.
	for prev := ""; ; time.Sleep(time.Second) {
		now := fmt.Sprint(r.lastSeq(events.StreamState), r.lastSeq(events.StreamDNS), r.lastSeq(events.StreamRoutes))
		if now == prev {
			break
		}
		prev = now
	}
	static := flood(r, 2*time.Second, nil)
	b.Logf("N=%d: static DNS rate %.0f qps", n, static.qps(time.Time{}, time.Now()))

	for _, phase := range []struct {
		name   string
		ok     bool
		rounds int
		want   func(int) string
	}{{"failure", false, fall, backup}, {"recovery", true, rise, main}} {
		sent := notifies.Load()
		var ru0 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		stop := make(chan struct{})
		flooded := make(chan *floodResult)
		go func() { flooded <- flood(r, 0, stop) }()
		s := r.storm(phase.ok, phase.rounds, phase.want)
		close(stop)
		f := <-flooded
		var ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
		answers := spreadOf(s.kill, s.answers)
		var routed []time.Time
		for _, t := range s.routes {
			if !t.IsZero() {
				routed = append(routed, t)
			}
		}
		state := spreadOf(s.threshold, s.state)
		last := answers.last
		// The storm: from the round that completes the thresholds until the last answer moved.
		storm := s.kill.Add(last + 100*time.Millisecond)
		b.Logf("N=%d %s: answers moved after the kill: %s (bound interval × %d + 100ms = %s)", n, phase.name, answers,
			phase.rounds, time.Duration(phase.rounds)*interval+100*time.Millisecond)
		b.Logf("N=%d %s: edge routes changed after the kill: %s (%d of %d apps)", n, phase.name, spreadOf(s.kill, routed), len(routed), n)
		b.Logf("N=%d %s: DNS during the storm %.0f qps = %.2f × static; %d endpoint and pool transitions at %.0f/s; %d zone versions, %d NOTIFYs; CPU %s, peak RSS %d MiB",
			n, phase.name, f.qps(s.threshold, storm), f.qps(s.threshold, storm)/static.qps(time.Time{}, time.Now()),
			s.transitions, float64(s.transitions)/max(state.last-state.first, time.Millisecond).Seconds(), s.zoneVersions, notifies.Load()-sent,
			cpu.Round(time.Millisecond), ru1.Maxrss/1024)
		b.ReportMetric(float64(last.Milliseconds()), phase.name+"-last-answer-ms")
	}
}

// floodResult holds when each answer of a flood came.
type floodResult struct{ at []time.Time }

// qps is the rate of answers between from and to (the whole flood when from is zero).
func (f *floodResult) qps(from, to time.Time) float64 {
	if len(f.at) == 0 {
		return 0
	}
	if from.IsZero() {
		from, to = f.at[0], f.at[len(f.at)-1]
	}
	n := 0
	for _, t := range f.at {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return float64(n) / max(to.Sub(from), time.Millisecond).Seconds()
}

// flood asks the DNS server for app names as fast as two clients get answers, for d or until
// stop is closed.
func flood(r *region, d time.Duration, stop <-chan struct{}) *floodResult {
	var mu sync.Mutex
	out := &floodResult{}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			// A lost datagram costs the flood 100ms, not the second a resolver would wait.
			c := &dns.Client{Timeout: 100 * time.Millisecond}
			conn, err := c.Dial(r.dns.Addr())
			if err != nil {
				return
			}
			defer conn.Close()
			var at []time.Time
			m := new(dns.Msg)
			for i := w; d <= 0 || time.Now().Before(end); i += 2 {
				select {
				case <-stop:
					i = -1
				default:
				}
				if i < 0 {
					break
				}
				m.SetQuestion(fmt.Sprintf("app%d.region.test.", i%r.n), dns.TypeA)
				if _, _, err := c.ExchangeWithConn(m, conn); err == nil {
					at = append(at, time.Now())
				}
			}
			mu.Lock()
			out.at = append(out.at, at...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(out.at, time.Time.Compare)
	return out
}

// fakeSecondary acknowledges and counts the NOTIFYs sent to the address it returns.
func fakeSecondary(b *testing.B) (string, *atomic.Int64) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var count atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if m.Opcode == dns.OpcodeNotify {
			count.Add(1)
		}
		r := new(dns.Msg)
		r.SetReply(m)
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &count
}
