package prober

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"
)

// TestTheSharedRawSocketGetsItsReadBufferPastRmemMaxAsRoot asks, as root, for twice
// net.core.rmem_max (at least rawReadBuffer) on a raw ICMP socket readied as the shared one, and
// reads back SO_RCVBUF: the answers to a worker's checks sent at once are not dropped for a
// buffer the system's default cap (often 208 KiB) would have kept small.
func TestTheSharedRawSocketGetsItsReadBufferPastRmemMaxAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root gets a read buffer past net.core.rmem_max (SO_RCVBUFFORCE)")
	}
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatalf("read net.core.rmem_max: %v", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("net.core.rmem_max: %v", err)
	}
	conn, err := icmp.ListenPacket(family4.raw, "127.0.0.1")
	if err != nil {
		t.Skipf("this machine allows no raw ICMP socket: %v", err)
	}
	defer conn.Close()
	if err := family4.tune(conn); err != nil {
		t.Fatalf("tune the raw socket: %v", err)
	}
	want := max(rawReadBuffer, 2*rmemMax)
	c := conn.IPv4PacketConn().PacketConn
	if err := setReadBuffer(c, want); err != nil {
		t.Fatalf("set the read buffer: %v", err)
	}
	ip, ok := c.(*net.IPConn)
	if !ok {
		t.Fatalf("the raw socket is a %T, not an IP socket", c)
	}
	rc, err := ip.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
		t.Fatalf("read SO_RCVBUF: %v %v", err, gerr)
	}
	// Linux reports twice the size it granted, its bookkeeping included.
	if got < 2*want {
		t.Errorf("SO_RCVBUF is %d bytes, want at least twice the %d asked (net.core.rmem_max is %d)", got, want, rmemMax)
	}
}
