//go:build unix

package dnsupdater

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// TestATCPClientTakingALargeReplySteadilyKeepsItsSlot holds the slots of a server of four with
// a client that takes a reply of 50 KB slowly but steadily, a kilobyte every 10 ms, and three
// that connected after that reply began and send nothing. A newcomer takes the slot of one of
// those, which have waited longest for their client: the reply still coming is not cut short, as
// its client takes every part of it as it comes.
func TestATCPClientTakingALargeReplySteadilyKeepsItsSlot(t *testing.T) {
	const slots = 4
	srv := fourSlotServer(t, bigRecords()+"\n"+hugeRecords())
	dial := func(from byte) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, from)}, Timeout: 2 * time.Second,
			// A receive buffer of a few kilobytes from the handshake on, so that its window
			// holds back the reply.
			Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
		c, err := d.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	steady := dial(2)
	if err := (&dns.Conn{Conn: steady}).WriteMsg(newQuery("huge.demo.test.", dns.TypeTXT)); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	read := make(chan error, 1)
	go func() {
		var reply []byte
		buf := make([]byte, 1024)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		_ = steady.SetReadDeadline(time.Now().Add(30 * time.Second))
		for len(reply) < 2 || len(reply) < 2+int(binary.BigEndian.Uint16(reply)) {
			n, err := steady.Read(buf)
			reply = append(reply, buf[:n]...)
			got.Store(int64(len(reply)))
			if err != nil {
				read <- fmt.Errorf("after %d bytes: %w", len(reply), err)
				return
			}
			<-tick.C
		}
		read <- new(dns.Msg).Unpack(reply[2:])
	}()
	// progressed waits until the steady client has taken n bytes more.
	progressed := func(n int64) {
		t.Helper()
		want := got.Load() + n
		eventstest.Eventually(t, 20*time.Second, func() bool { return got.Load() >= want }, "the steady client did not take %d bytes more within 20 s", n)
	}
	progressed(1)
	for from := byte(3); from < 6; from++ {
		dial(from)
	}
	// More than the buffers between the server and the client hold: the server has written
	// part of the reply since the three connected.
	progressed(24 << 10)
	if !answersSOA(&dns.Conn{Conn: dial(6)}) {
		t.Fatal("a newcomer from 127.0.0.6 must be answered when every slot is held")
	}
	if err := <-read; err != nil {
		t.Fatalf("the client taking its reply steadily was cut off: %v", err)
	}
}
