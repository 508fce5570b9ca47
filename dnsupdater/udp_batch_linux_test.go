//go:build linux && (amd64 || arm64)

package dnsupdater

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// TestBatchedReadsAndWritesAllocateNothing holds the batched UDP path to zero allocations per
// system call: a closure made per call had the server collect its garbage every second at
// 40,000 queries a second.
func TestBatchedReadsAndWritesAllocateNothing(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	rc, err := srv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	b := newBatch(false)
	query := []byte("query")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := client.Write(query); err != nil {
			t.Fatal(err)
		}
		n, err := b.read(rc)
		if err != nil || n != 1 {
			t.Fatalf("read %d datagrams, %v; want 1", n, err)
		}
		// Echo it back.
		b.outBufs[0] = append(b.outBufs[0][:0], b.bufs[0][:b.in[0].n]...)
		b.outIov[0].Base = &b.outBufs[0][0]
		b.outIov[0].SetLen(len(b.outBufs[0]))
		b.out[0].hdr.Name, b.out[0].hdr.Namelen = b.in[0].hdr.Name, b.in[0].hdr.Namelen
		b.write(rc, 1)
	})
	if allocs != 0 {
		t.Errorf("want 0 allocations per read and write, got %.1f", allocs)
	}
	buf := make([]byte, 16)
	n, err := client.Read(buf)
	if err != nil || string(buf[:n]) != "query" {
		t.Errorf("want the echoed query back, got %q, %v", buf[:n], err)
	}
}

// TestTheBusyShareIsTheTimeNotSpentWaiting holds the measure the second reader is called in by:
// the share of each window the first reader spent answering rather than waiting for datagrams.
func TestTheBusyShareIsTheTimeNotSpentWaiting(t *testing.T) {
	at := func(us int) time.Time { return time.Unix(0, 0).Add(time.Duration(us) * time.Microsecond) }
	var m busyMeter
	// Within the window: no measure yet.
	if _, ok := m.note(at(0), at(3000), at(4000)); ok {
		t.Fatal("a measure before the window ended")
	}
	// 3 ms + 2 ms waited of 10 ms: busy half the window.
	busy, ok := m.note(at(4000), at(6000), at(10000))
	if !ok || busy != 0.5 {
		t.Fatalf("after 10 ms with 5 waited: want busy 0.5, got %v (ok %v)", busy, ok)
	}
	// The next window starts where the last ended: 1 ms waited of 10 ms.
	busy, ok = m.note(at(10000), at(11000), at(20000))
	if !ok || busy != 0.9 {
		t.Fatalf("after 10 ms with 1 waited: want busy 0.9, got %v (ok %v)", busy, ok)
	}
	// A reader that waited for a whole quiet second was not busy.
	busy, ok = m.note(at(20000), at(1020000), at(1020010))
	if !ok || busy > 0.001 {
		t.Fatalf("after a second of waiting: want busy about 0, got %v (ok %v)", busy, ok)
	}
}

// TestTheSecondReaderJoinsAboveHalfBusyAndLeavesBelowAQuarter holds the hysteresis that keeps a
// load near the threshold from calling the second reader in and out at every window.
func TestTheSecondReaderJoinsAboveHalfBusyAndLeavesBelowAQuarter(t *testing.T) {
	r := &secondReader{wake: make(chan struct{}, 1)}
	for _, step := range []struct {
		busy  float64
		on    bool
		woken bool
	}{
		{0.4, false, false},
		{0.5, true, true},
		{0.3, true, false},
		{0.9, true, false},
		{0.2, false, false},
		{0.45, false, false},
		{0.7, true, true},
	} {
		r.want(step.busy)
		woken := false
		select {
		case <-r.wake:
			woken = true
		default:
		}
		if r.on.Load() != step.on || woken != step.woken {
			t.Fatalf("busy %.2f: want on %v and woken %v, got %v and %v", step.busy, step.on, step.woken, r.on.Load(), woken)
		}
	}
}

// TestASecondReaderAnswersWhileCalledInAndSleepsWhenSentAway runs a socket's second reader alone
// (no first reader): while called in it answers every query; sent away, it answers at most the
// one it was already waiting for and then no more, the queries waiting in the socket until it
// is called in again; and it stops when asked.
func TestASecondReaderAnswersWhileCalledInAndSleepsWhenSentAway(t *testing.T) {
	js := eventstest.Start(t)
	s, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "127.0.0.1:0", Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ls.close()
	r, err := s.startSecondReader(s.ls.udp[0], false, 1)
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	send := func(id uint16) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("demo.test.", dns.TypeSOA)
		m.Id = id
		p, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	// receive returns the id of the next reply, or false when none comes by the deadline.
	receive := func(wait time.Duration) (uint16, bool) {
		t.Helper()
		buf := make([]byte, 4096)
		_ = client.SetReadDeadline(time.Now().Add(wait))
		n, err := client.Read(buf)
		if err != nil {
			return 0, false
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("want an SOA answer, got %v (%v)", m, err)
		}
		return m.Id, true
	}

	r.want(1)
	for id := uint16(1); id <= 20; id++ {
		send(id)
		if got, ok := receive(5 * time.Second); !ok || got != id {
			t.Fatalf("called in: want the reply to query %d, got %d (%v)", id, got, ok)
		}
	}
	r.want(0)
	// Sent away, it answers at most the datagram it was already waiting for, if it was.
	send(21)
	var waiting []uint16
	if got, ok := receive(300 * time.Millisecond); !ok {
		waiting = append(waiting, 21)
	} else if got != 21 {
		t.Fatalf("sent away: want no reply or the one to query 21, got the reply to %d", got)
	}
	send(22)
	waiting = append(waiting, 22)
	if got, ok := receive(300 * time.Millisecond); ok {
		t.Fatalf("sent away: want no reply while it sleeps, got the reply to %d", got)
	}
	r.want(1)
	for _, id := range waiting {
		if got, ok := receive(5 * time.Second); !ok || got != id {
			t.Fatalf("called in again: want the reply to query %d, which waited, got %d (%v)", id, got, ok)
		}
	}
	r.stop()
}

// TestAServerOnTheWildcardAddressAnswersFromTheAddressAsked binds the server to 0.0.0.0 (a
// dual-stack socket) and to ::, and asks it at 127.0.0.2 and 127.0.0.3 from a connected socket, as
// resolvers ask (they drop a reply from another address than the one they asked, dig says
// "reply from unexpected source"): the reply must come from the address asked, not from the
// one the routing table prefers (127.0.0.1).
func TestAServerOnTheWildcardAddressAnswersFromTheAddressAsked(t *testing.T) {
	for _, bind := range []string{"0.0.0.0:0", "[::]:0"} {
		js := eventstest.Start(t)
		srv, err := New(Options{
			JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: bind, Name: "dns-test",
			Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2, CredentialDirs: tempCredentialDirs(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := eventstest.Run(t, "dns server", srv.Run)
		_, port, err := net.SplitHostPort(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"} {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			r, _, err := c.Exchange(newQuery("shop.demo.test.", dns.TypeA), net.JoinHostPort(to, port))
			if err != nil {
				t.Errorf("bound to %s, asked at %s: %v", bind, to, err)
				continue
			}
			if len(r.Answer) != 1 {
				t.Errorf("bound to %s, asked at %s: want one address, got %v", bind, to, r.Answer)
			}
		}
		stop()
	}
}

// TestAnIPv4SocketOnTheWildcardAddressRepliesFromTheAddressAsked holds the batched path's
// IPv4 socket (a host without IPv6, where 0.0.0.0 is no dual-stack socket) to the same: each
// reply of a batch leaves from the address its query was sent to.
func TestAnIPv4SocketOnTheWildcardAddressRepliesFromTheAddressAsked(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rc, err := srv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if on, err := wantPktinfo(srv, rc); !on || err != nil {
		t.Fatalf("want the destination addresses told, got %v, %v", on, err)
	}
	port := srv.LocalAddr().(*net.UDPAddr).Port
	var clients []*net.UDPConn
	for _, to := range []byte{1, 2, 3} {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, to), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{to}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	b := newBatch(true)
	for got := 0; got < len(clients); {
		n, err := b.read(rc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if !replyFrom(b.ctrl[i][:b.in[i].hdr.Controllen]) {
				t.Fatalf("datagram %d: no destination address told", got+i)
			}
			b.outBufs[i] = append(b.outBufs[i][:0], b.bufs[i][:b.in[i].n]...)
			b.outIov[i].Base = &b.outBufs[i][0]
			b.outIov[i].SetLen(len(b.outBufs[i]))
			b.out[i].hdr.Name, b.out[i].hdr.Namelen = b.in[i].hdr.Name, b.in[i].hdr.Namelen
			b.out[i].hdr.Control, b.out[i].hdr.Controllen = b.in[i].hdr.Control, b.in[i].hdr.Controllen
		}
		b.write(rc, n)
		got += n
	}
	for _, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 16)
		if n, err := c.Read(buf); err != nil || n != 1 {
			t.Errorf("asked at %s: want the echo back, got %d bytes, %v", c.RemoteAddr(), n, err)
		}
	}
}

// FuzzReplyFrom holds replyFrom to any control data, as the kernel could truncate or pad it:
// it never reads past the data, and what it lets go with a reply is packet-info messages alone,
// each with no interface but an IPv6 link-local address's.
func FuzzReplyFrom(f *testing.F) {
	v4 := make([]byte, 32)
	binary.NativeEndian.PutUint64(v4, 28)
	binary.NativeEndian.PutUint32(v4[8:], unix.IPPROTO_IP)
	binary.NativeEndian.PutUint32(v4[12:], unix.IP_PKTINFO)
	binary.NativeEndian.PutUint32(v4[16:], 1)
	v6 := make([]byte, 40)
	binary.NativeEndian.PutUint64(v6, 36)
	binary.NativeEndian.PutUint32(v6[8:], unix.IPPROTO_IPV6)
	binary.NativeEndian.PutUint32(v6[12:], unix.IPV6_PKTINFO)
	binary.NativeEndian.PutUint32(v6[32:], 1)
	f.Add(v4)
	f.Add(v6)
	f.Add(append(append([]byte(nil), v6...), v4...))
	f.Add(v4[:20])
	ll := append([]byte(nil), v6...)
	copy(ll[16:], netip.MustParseAddr("fe80::53").AsSlice())
	f.Add(ll)
	f.Fuzz(func(t *testing.T, ctrl []byte) {
		if len(ctrl) > pktinfoLen {
			ctrl = ctrl[:pktinfoLen]
		}
		if !replyFrom(ctrl) {
			return
		}
		for off := 0; off < len(ctrl); {
			l := int(binary.NativeEndian.Uint64(ctrl[off:]))
			level, typ := binary.NativeEndian.Uint32(ctrl[off+8:]), binary.NativeEndian.Uint32(ctrl[off+12:])
			switch {
			case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO:
				if i := binary.NativeEndian.Uint32(ctrl[off+16:]); i != 0 {
					t.Fatalf("IP_PKTINFO at %d keeps interface %d", off, i)
				}
			case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO:
				addr := netip.AddrFrom16([16]byte(ctrl[off+16 : off+32]))
				if i := binary.NativeEndian.Uint32(ctrl[off+32:]); i != 0 && !addr.IsLinkLocalUnicast() {
					t.Fatalf("IPV6_PKTINFO at %d keeps interface %d for %v", off, i, addr)
				}
			default:
				t.Fatalf("a message of level %d and type %d at %d went with the reply", level, typ, off)
			}
			off += (l + 7) &^ 7
		}
	})
}

// TestAReplyToAGlobalClientLeavesFromTheLinkLocalAddressItAsked holds the wildcard socket's
// replies to a query sent to the server's IPv6 link-local address from a client's global one:
// the kernel sends from a link-local address only on the link it is told, so the reply keeps
// the interface the query came in on (with none, sendmsg refused it, EINVAL, and the client had
// no reply). It runs as root alone: it links two network namespaces of its own with a veth pair,
// the server's holding 2001:db8::1 and fe80::53, the client's 2001:db8::2.
func TestAReplyToAGlobalClientLeavesFromTheLinkLocalAddressItAsked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2), to make network namespaces")
	}
	tag := strconv.Itoa(os.Getpid() % 100000)
	server, client := "detour-ll-s"+tag, "detour-ll-c"+tag
	serverLink, clientLink := "dtrlls"+tag, "dtrllc"+tag
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{server, client} {
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	ip("link", "add", serverLink, "netns", server, "type", "veth", "peer", "name", clientLink, "netns", client)
	ip("-n", server, "link", "set", serverLink, "up")
	ip("-n", client, "link", "set", clientLink, "up")
	ip("-n", server, "addr", "add", "2001:db8::1/64", "dev", serverLink, "nodad")
	ip("-n", server, "addr", "add", "fe80::53/64", "dev", serverLink, "nodad")
	ip("-n", client, "addr", "add", "2001:db8::2/64", "dev", clientLink, "nodad")

	var srv, c *net.UDPConn
	inNetns(t, server, func() (err error) {
		srv, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified})
		return err
	})
	defer srv.Close()
	inNetns(t, client, func() (err error) {
		c, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("2001:db8::2")})
		return err
	})
	defer c.Close()
	rc, err := srv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if on, err := wantPktinfo(srv, rc); !on || err != nil {
		t.Fatalf("want the destination addresses told, got %v, %v", on, err)
	}
	to := &net.UDPAddr{IP: net.ParseIP("fe80::53"), Port: srv.LocalAddr().(*net.UDPAddr).Port, Zone: clientLink}
	if _, err := c.WriteToUDP([]byte{1}, to); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := newBatch(true)
	n, err := b.read(rc)
	if err != nil || n != 1 {
		t.Fatalf("read %d datagrams, %v; want the query", n, err)
	}
	if !replyFrom(b.ctrl[0][:b.in[0].hdr.Controllen]) {
		t.Fatal("no destination address told")
	}
	b.outBufs[0] = append(b.outBufs[0][:0], b.bufs[0][:b.in[0].n]...)
	b.outIov[0].Base = &b.outBufs[0][0]
	b.outIov[0].SetLen(len(b.outBufs[0]))
	b.out[0].hdr.Name, b.out[0].hdr.Namelen = b.in[0].hdr.Name, b.in[0].hdr.Namelen
	b.out[0].hdr.Control, b.out[0].hdr.Controllen = b.in[0].hdr.Control, b.in[0].hdr.Controllen
	b.write(rc, 1)

	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	got, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || got != 1 {
		t.Fatalf("asked at %v from 2001:db8::2: want the echo back, got %d bytes, %v", to, got, err)
	}
	if from.Addr().WithZone("") != netip.MustParseAddr("fe80::53") {
		t.Errorf("the reply came from %v, want fe80::53, the address asked", from)
	}
}

// inNetns runs open, which opens sockets, in the network namespace ns (made by ip netns add):
// a socket stays in the namespace it was opened in.
func inNetns(t *testing.T, ns string, open func() error) {
	t.Helper()
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer home.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter network namespace %s: %v", ns, err)
	}
	err = open()
	if serr := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); serr != nil {
		// The thread stays locked, and goes with the goroutine: no other may run in ns.
		t.Fatalf("leave network namespace %s: %v", ns, serr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
}
