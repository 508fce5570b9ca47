package prober

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
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
	ns := networkNamespace(t, func() error {
		// The sysctl is per namespace: this opens ping sockets here only.
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644); err != nil {
			return fmt.Errorf("cannot allow ping sockets in the new namespace: %w", err)
		}
		return nil
	})
	entered := make(chan error, 1)
	go func() {
		err := enterNamespace(ns)
		if err == nil {
			f()
		}
		entered <- err
	}()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
}

// networkNamespace makes a new network namespace, only its loopback up, runs setup on a thread
// in it (a command that setup starts runs in it too), and returns a descriptor of it for
// enterNamespace, closed when tb ends. It skips where namespaces cannot be made.
func networkNamespace(tb testing.TB, setup func() error) int {
	tb.Helper()
	type made struct {
		fd  int
		why string
	}
	res := make(chan made, 1)
	go func() {
		// Never unlocked: the runtime ends the thread with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res <- made{why: "cannot make a network namespace (needs root or CAP_SYS_ADMIN): " + err.Error()}
			return
		}
		if err := benchenv.LoopbackUp(); err != nil {
			res <- made{why: err.Error()}
			return
		}
		if err := setup(); err != nil {
			res <- made{why: err.Error()}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res <- made{why: "cannot open the namespace: " + err.Error()}
			return
		}
		res <- made{fd: fd}
	}()
	m := <-res
	if m.why != "" {
		tb.Skip(m.why)
	}
	tb.Cleanup(func() { _ = unix.Close(m.fd) })
	return m.fd
}

// enterNamespace moves the calling goroutine's thread into the network namespace ns for good:
// the goroutine keeps the thread, and the runtime ends it with the goroutine.
func enterNamespace(ns int) error {
	runtime.LockOSThread()
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter the network namespace: %w", err)
	}
	return nil
}

// rawSocketsOpen counts the raw IPv4 sockets open in the calling thread's network namespace.
func rawSocketsOpen() (int, error) {
	b, err := os.ReadFile("/proc/thread-self/net/raw")
	if err != nil {
		return 0, err
	}
	return bytes.Count(b, []byte("\n")) - 1, nil // less the header
}

// Where ping sockets are off, the icmp checks in flight share one raw socket: the kernel hands
// every raw socket every ICMP message of the host, so n checks with a socket each read n² of
// them when a network fails. Loopback here ignores echo requests: the checks wait for their
// timeout while the namespace's raw sockets are counted, and none is left once they end.
func TestICMPChecksInFlightShareOneRawSocketClosedWhenTheyEnd(t *testing.T) {
	ns := networkNamespace(t, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte("1"), 0o644)
	})
	saved := icmpMode[0].Load()
	t.Cleanup(func() { icmpMode[0].Store(saved) })
	icmpMode[0].Store(icmpModeRaw)
	const n = 20
	tg := target(t, "icmp", "127.0.0.1:0", func(k *config.Check) { k.Timeout = config.Duration(time.Second) })
	dirs := testCredentialDirs(t)
	done := make(chan Outcome, n)
	for range n {
		go func() {
			if err := enterNamespace(ns); err != nil {
				done <- failure(ClassError, err)
				return
			}
			done <- Probe(context.Background(), tg, dirs)
		}()
	}
	type count struct {
		most, left int
		err        error
	}
	ended, counted := make(chan struct{}), make(chan count, 1)
	go func() {
		var c count
		if c.err = enterNamespace(ns); c.err != nil {
			counted <- c
			return
		}
		for {
			select {
			case <-ended:
				c.left, c.err = rawSocketsOpen()
				counted <- c
				return
			default:
			}
			open, err := rawSocketsOpen()
			if err != nil {
				c.err = err
				counted <- c
				return
			}
			c.most = max(c.most, open)
			time.Sleep(time.Millisecond)
		}
	}()
	for range n {
		if o := <-done; o.OK || o.Class != ClassTimeout {
			t.Errorf("a check of an address that ignores echo requests: ok %v class %q (%s), want class %q", o.OK, o.Class, o.Err, ClassTimeout)
		}
	}
	close(ended)
	c := <-counted
	switch {
	case c.err != nil:
		t.Fatalf("count the raw sockets: %v", c.err)
	case c.most != 1:
		t.Errorf("%d checks in flight held %d raw sockets at most, want 1", n, c.most)
	case c.left != 0:
		t.Errorf("%d raw sockets left open once the checks ended, want none", c.left)
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

// Echo requests to networks whose router is gone wait in the kernel for its address (ARP,
// about 3 s) and are charged to the socket that sent them meanwhile: a raw socket refuses to
// send past twice its send buffer (net.core.wmem_default, 208 KiB: some 500 requests) with
// "no buffer space available". The shared socket's buffer is every check's: once the requests
// to the dead networks filled it, the checks of endpoints that answer failed with an error, and
// so did the dead ones' checks, where each check's own socket had a buffer of its own. Here a
// round of checks runs at once: one in six of 127.0.0.1, which answers, the others of
// addresses behind routers on a link where nothing answers ARP.
func TestAnICMPCheckOfAnEndpointThatAnswersPassesWhileRequestsToDeadRoutersFillTheSharedSocket(t *testing.T) {
	// Its checks wait seconds for ARP to fail or their timeouts, and it asserts no time: it runs
	// beside the other such tests. No other test that runs in parallel checks over ICMP or sets
	// icmpMode.
	t.Parallel()
	const routers = 12
	ns := networkNamespace(t, func() error {
		cmds := [][]string{
			{"link", "add", "dead0", "type", "veth", "peer", "name", "dead1"},
			{"addr", "add", "10.99.0.1/24", "dev", "dead0"},
			{"link", "set", "dead0", "up"},
			{"link", "set", "dead1", "up"},
		}
		for g := range routers {
			cmds = append(cmds, []string{"route", "add", fmt.Sprintf("10.%d.0.0/16", g+1), "via", fmt.Sprintf("10.99.0.%d", g+10)})
		}
		for _, c := range cmds {
			if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
				return fmt.Errorf("cannot make a link to dead routers: ip %v: %w: %s", c, err, out)
			}
		}
		return nil
	})
	saved := icmpMode[0].Load()
	t.Cleanup(func() { icmpMode[0].Store(saved) })
	icmpMode[0].Store(icmpModeRaw)
	const n = 1200
	dirs := testCredentialDirs(t)
	type result struct {
		addr string
		o    Outcome
	}
	done := make(chan result, n)
	for i := range n {
		addr := "127.0.0.1"
		if i%6 != 0 {
			addr = netip.AddrFrom4([4]byte{10, byte(1 + i%routers), byte(i / 250), byte(1 + i%250)}).String()
		}
		tg := target(t, "icmp", addr+":0", func(k *config.Check) { k.Timeout = config.Duration(5 * time.Second) })
		go func() {
			if err := enterNamespace(ns); err != nil {
				done <- result{addr, failure(ClassError, err)}
				return
			}
			done <- result{addr, Probe(context.Background(), tg, dirs)}
		}()
	}
	failed, wrong := 0, 0
	for range n {
		r := <-done
		switch {
		case r.addr == "127.0.0.1" && !r.o.OK:
			if failed == 0 {
				t.Errorf("a check of 127.0.0.1, which answers: class %q: %s", r.o.Class, r.o.Err)
			}
			failed++
		case r.addr != "127.0.0.1" && r.o.Class != ClassUnreachable && r.o.Class != ClassTimeout:
			if wrong == 0 {
				t.Errorf("a check of %s, behind a dead router: ok %v class %q (%s), want class %q or %q",
					r.addr, r.o.OK, r.o.Class, r.o.Err, ClassUnreachable, ClassTimeout)
			}
			wrong++
		}
	}
	if failed+wrong > 0 {
		t.Errorf("%d of %d checks of 127.0.0.1 failed, %d of %d of dead routers' networks found neither unreachable nor a timeout",
			failed, n/6, wrong, n-n/6)
	}
}
