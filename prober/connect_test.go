package prober

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// connectResult is what a connect-only check reports: the class and the error's text.
type connectResult struct{ class, err string }

func (r connectResult) String() string { return fmt.Sprintf("class %q error %q", r.class, r.err) }

// connectBoth runs connectOnly and net.Dialer's path (dialOnly) against addr, each under its
// own context with the same timeout.
func connectBoth(addr netip.AddrPort, timeout time.Duration, ctxOf func() context.Context) (hand, dialer connectResult) {
	run := func(f func(context.Context, *net.Dialer, netip.AddrPort) error) connectResult {
		ctx, cancel := context.WithTimeout(ctxOf(), timeout)
		defer cancel()
		err := f(ctx, &net.Dialer{KeepAlive: -1}, addr)
		if err == nil {
			return connectResult{}
		}
		return connectResult{class: classify(err), err: err.Error()}
	}
	return run(connectOnly), run(dialOnly)
}

// acceptAndDrop listens on addr ("127.0.0.1:0", "[::1]:0") and closes every connection it
// accepts; it returns the address, or skips the test where the family is unavailable.
func acceptAndDrop(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// closedAddr returns an address of the family of addr on which nothing listens.
func closedAddr(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	ap := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	return ap
}

func TestConnectOnlyMatchesTheDialer(t *testing.T) {
	v4 := acceptAndDrop(t, "127.0.0.1:0")
	background := context.Background
	cases := []struct {
		name      string
		addr      netip.AddrPort
		timeout   time.Duration
		ctx       func() context.Context
		wantClass string
	}{
		{name: "a listener over IPv4 passes", addr: v4, wantClass: ""},
		{name: "a listener over IPv6 passes", addr: acceptAndDrop(t, "[::1]:0"), wantClass: ""},
		{name: "an IPv4-mapped IPv6 address is dialled over IPv4", addr: netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), v4.Port()), wantClass: ""},
		{name: "a closed port over IPv4 is refused", addr: closedAddr(t, "127.0.0.1:0"), wantClass: ClassRefused},
		{name: "a closed port over IPv6 is refused", addr: closedAddr(t, "[::1]:0"), wantClass: ClassRefused},
		{name: "another loopback address's closed port is refused", addr: netip.MustParseAddrPort("127.9.8.7:1"), wantClass: ClassRefused},
		{name: "a connect that gets no answer times out", addr: netip.MustParseAddrPort(eventstest.Blackhole(t)),
			timeout: 200 * time.Millisecond, wantClass: ClassTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			timeout := c.timeout
			if timeout == 0 {
				timeout = time.Second
			}
			ctxOf := c.ctx
			if ctxOf == nil {
				ctxOf = background
			}
			hand, dialer := connectBoth(c.addr, timeout, ctxOf)
			if hand != dialer {
				t.Fatalf("connectOnly: %v; net.Dialer: %v", hand, dialer)
			}
			if hand.class != c.wantClass {
				t.Errorf("both: %v, want class %q", hand, c.wantClass)
			}
		})
	}

	t.Run("a cancelled check fails as an error in both, only the text differs", func(t *testing.T) {
		cancelled := func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}
		hand, dialer := connectBoth(netip.MustParseAddrPort(eventstest.Blackhole(t)), time.Second, cancelled)
		if hand.class != ClassError || dialer.class != ClassError {
			t.Errorf("connectOnly: %v; net.Dialer: %v; want class %q from both", hand, dialer, ClassError)
		}
	})
}

func TestConnectOnlyMatchesTheDialerWithNoRoute(t *testing.T) {
	addrs := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("[2001:db8::1]:80")}
	type pair struct{ hand, dialer connectResult }
	got := make([]pair, len(addrs))
	inIsolatedNetwork(t, func() {
		for i, a := range addrs {
			got[i].hand, got[i].dialer = connectBoth(a, time.Second, context.Background)
		}
	})
	for i, a := range addrs {
		if got[i].hand != got[i].dialer || got[i].hand.class != ClassUnreachable {
			t.Errorf("%s: connectOnly: %v; net.Dialer: %v; want both class %q", a, got[i].hand, got[i].dialer, ClassUnreachable)
		}
	}
}

// FuzzConnectOnlyMatchesTheDialer dials loopback addresses in every form (IPv4, IPv4-mapped,
// IPv6) both ways: a listener's port, or any other, open or not.
func FuzzConnectOnlyMatchesTheDialer(f *testing.F) {
	v4 := acceptAndDrop(f, "127.0.0.1:0")
	f.Add(byte(0), byte(0), byte(1), uint16(0), uint8(0))
	f.Add(byte(0), byte(0), byte(1), uint16(0), uint8(1))
	f.Add(byte(0), byte(0), byte(1), uint16(0), uint8(2))
	f.Add(byte(1), byte(2), byte(3), uint16(1), uint8(0))
	f.Add(byte(0), byte(0), byte(1), uint16(65535), uint8(2))
	f.Fuzz(func(t *testing.T, x, y, z byte, port uint16, form uint8) {
		if port == 0 {
			port = v4.Port() // the listener's, reached however the address is written
		}
		ip := netip.AddrFrom4([4]byte{127, x, y, z})
		switch form % 3 {
		case 1:
			ip = netip.AddrFrom16(ip.As16())
		case 2:
			ip = netip.IPv6Loopback()
		}
		hand, dialer := connectBoth(netip.AddrPortFrom(ip, port), time.Second, context.Background)
		if hand != dialer {
			t.Fatalf("%s: connectOnly: %v; net.Dialer: %v", netip.AddrPortFrom(ip, port), hand, dialer)
		}
	})
}

// BenchmarkConnectOnly is a TCP check without send or expect, by hand and with net.Dialer:
// against a loopback listener that accepts and closes (its accepts counted in both), and
// against a closed port.
func BenchmarkConnectOnly(b *testing.B) {
	open := acceptAndDrop(b, "127.0.0.1:0")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	for _, target := range []struct {
		name    string
		addr    netip.AddrPort
		wantErr bool
	}{{"passes", open, false}, {"refused", closed, true}} {
		for _, way := range []struct {
			name string
			f    func(context.Context, *net.Dialer, netip.AddrPort) error
		}{{"hand", connectOnly}, {"net_dialer", dialOnly}} {
			b.Run(target.name+"/"+way.name, func(b *testing.B) {
				d := &net.Dialer{KeepAlive: -1}
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					err := way.f(ctx, d, target.addr)
					cancel()
					if (err != nil) != target.wantErr {
						b.Fatalf("err = %v", err)
					}
				}
			})
		}
	}
}
