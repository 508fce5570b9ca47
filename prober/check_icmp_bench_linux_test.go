package prober

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober/benchenv"
)

// rawICMPNetwork makes a network namespace where icmp checks run over raw sockets, as on a
// host without ping sockets: only loopback, up; 127.0.0.0/24 answers echo requests, firewall
// rules answer those to 127.0.1.0/24 with host unreachable, as a router on the path to a dead
// network does (with no rate limit), and drop those to 127.0.2.0/24, as a dead host's network
// does. It returns a descriptor of the namespace, for unix.Setns, closed when b ends. The
// benchmark skips where it cannot be made.
func rawICMPNetwork(b *testing.B) int {
	b.Helper()
	return networkNamespace(b, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/icmp_ratemask", []byte("0"), 0o644); err != nil {
			return fmt.Errorf("cannot lift the ICMP rate limit: %w", err)
		}
		for _, rule := range [][]string{
			{"-d", "127.0.1.0/24", "-p", "icmp", "--icmp-type", "echo-request", "-j", "REJECT", "--reject-with", "icmp-host-unreachable"},
			{"-d", "127.0.2.0/24", "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP"},
		} {
			if out, err := exec.Command("iptables", append([]string{"-A", "INPUT"}, rule...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("cannot add a firewall rule for echo requests: %w: %s", err, out)
			}
		}
		return nil
	})
}

// BenchmarkICMPChecksInFlightOverRawSockets runs n icmp checks at once over raw sockets, as
// when a network of 2n/3 endpoints fails: a third answered, a third failing with host
// unreachable, a third timing out after 1 s. It reports the CPU time (user and system, the
// whole process's) per check, and the share of checks that found the wrong outcome (a reply
// lost to a full socket buffer times out). Every raw socket open is handed every ICMP message
// of the host: those of the checks that time out, n/3 of them, are handed every message of the
// round.
func BenchmarkICMPChecksInFlightOverRawSockets(b *testing.B) {
	ns := rawICMPNetwork(b)
	saved := icmpMode[0].Load()
	b.Cleanup(func() { icmpMode[0].Store(saved) })
	icmpMode[0].Store(icmpModeRaw)
	if _, err := benchenv.RaiseFileLimit(4096); err != nil {
		b.Logf("file limit: %v", err)
	}
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			type result struct {
				want string // the class the check must find, "" for none (it passes)
				o    Outcome
			}
			done := make(chan result, n)
			rounds := make([]chan struct{}, n)
			for i := range rounds {
				rounds[i] = make(chan struct{}, 1)
				want := []string{"", ClassUnreachable, ClassTimeout}[i%3]
				addr := netip.AddrFrom4([4]byte{127, 0, byte(i % 3), byte(1 + i/3%250)})
				c := newICMPChecker(Target{Dial: netip.AddrPortFrom(addr, 0), Check: config.Check{Type: config.CheckICMP}})
				go func() {
					if err := enterNamespace(ns); err != nil {
						for range rounds[i] {
							done <- result{want, failure(ClassError, err)}
						}
						return
					}
					for range rounds[i] {
						done <- result{want, timed(context.Background(), c, time.Second, time.Now)}
					}
				}()
			}
			b.Cleanup(func() {
				for _, r := range rounds {
					close(r)
				}
			})
			var before, after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			ran, wrong := 0, 0
			for b.Loop() {
				for _, r := range rounds {
					r <- struct{}{}
				}
				for range n {
					r := <-done
					if r.o.OK != (r.want == "") || !r.o.OK && r.o.Class != r.want {
						if wrong == 0 {
							b.Logf("a check that must find %q found ok %v class %q: %s", r.want, r.o.OK, r.o.Class, r.o.Err)
						}
						wrong++
					}
				}
				ran++
			}
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(ran*n), "cpu-µs/check")
			b.ReportMetric(100*float64(wrong)/float64(ran*n), "wrong-%")
		})
	}
}
