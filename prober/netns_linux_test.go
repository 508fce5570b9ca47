package prober

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober/benchenv"
	"golang.org/x/sys/unix"
)

// inIsolatedNetwork runs f on a thread of its own in a new, empty network namespace: only a
// loopback interface, no routes, and ping sockets open to every group. Nothing f sends can leave
// it. The thread is thrown away afterwards. The test skips where namespaces cannot be made.
func inIsolatedNetwork(t *testing.T, f func()) {
	t.Helper()
	skip := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the runtime ends the thread with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- "cannot make a network namespace (needs root or CAP_SYS_ADMIN): " + err.Error()
			return
		}
		if err := benchenv.LoopbackUp(); err != nil {
			skip <- "cannot bring up loopback in the new namespace: " + err.Error()
			return
		}
		// The sysctl is per namespace: this opens ping sockets here only.
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644); err != nil {
			skip <- "cannot allow ping sockets in the new namespace: " + err.Error()
			return
		}
		f()
	}()
	<-done
	select {
	case why := <-skip:
		t.Skip(why)
	default:
	}
}

func TestICMPCheckUsesUnprivilegedPingSocketsWhereTheKernelAllowsThem(t *testing.T) {
	saved := icmpMode[0].Load()
	t.Cleanup(func() { icmpMode[0].Store(saved) })
	var o Outcome
	var mode int32
	inIsolatedNetwork(t, func() {
		icmpMode[0].Store(icmpModeUnknown)
		o = Probe(context.Background(), target(t, "icmp", "127.0.0.1:0", nil), testCredentialDirs(t))
		mode = icmpMode[0].Load()
	})
	if !o.OK {
		t.Fatalf("ping 127.0.0.1 over a ping socket: class %q: %s", o.Class, o.Err)
	}
	if mode != icmpModePing {
		t.Errorf("the check used socket mode %d, want ping sockets (%d)", mode, icmpModePing)
	}
}

func TestChecksOfAnAddressWithNoRouteFailWithUnreachable(t *testing.T) {
	// 192.0.2.1 is TEST-NET-1; in the empty namespace there is no route to it, so the kernel
	// refuses before anything is sent. Only checks whose sockets are made on the calling thread
	// belong here: net/http dials on goroutines of its own, which may run outside the namespace.
	const addr = "192.0.2.1:80"
	cases := []checkCase{
		{name: "tcp", target: target(t, "tcp", addr, nil), wantClass: ClassUnreachable, wantErr: "unreachable"},
		{name: "dns", target: target(t, "dns", addr, func(k *config.Check) { k.Query, k.QueryType = "example.test", "A" }),
			wantClass: ClassUnreachable, wantErr: "unreachable"},
		{name: "icmp", target: target(t, "icmp", addr, nil), wantClass: ClassUnreachable, wantErr: "unreachable"},
	}
	got := make([]Outcome, len(cases))
	inIsolatedNetwork(t, func() {
		for i, c := range cases {
			got[i] = Probe(context.Background(), c.target, testCredentialDirs(t))
		}
	})
	for i, c := range cases {
		if o := got[i]; o.OK || o.Class != c.wantClass {
			t.Errorf("%s: ok %v class %q (%s), want class %q", c.name, o.OK, o.Class, o.Err, c.wantClass)
		}
	}
}

// A stopping worker cancels its checks: an icmp check waiting for a reply that never comes ends
// then, not at its timeout, which is up to its interval (and a stop waited for it, past
// StopGrace). Loopback here ignores echo requests; the context ends before the check reads.
func TestAnICMPCheckEndsWhenItsContextIsCancelled(t *testing.T) {
	var o Outcome
	var took time.Duration
	inIsolatedNetwork(t, func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte("1"), 0o644); err != nil {
			t.Errorf("ignore echo requests in the new namespace: %v", err)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		o = Probe(ctx, target(t, "icmp", "127.0.0.1:0", func(k *config.Check) {
			k.Interval, k.Timeout = config.Duration(20*time.Second), config.Duration(20*time.Second)
		}), testCredentialDirs(t))
		took = time.Since(start)
	})
	if o.OK || took > 10*time.Second {
		t.Fatalf("cancelled, the check took %s (ok %v, class %q: %s), want it to end at once", took, o.OK, o.Class, o.Err)
	}
}
