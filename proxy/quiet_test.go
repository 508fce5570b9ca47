package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

func TestAnIdleConnectionIsQuietUntilTheInstanceSendsClosesOrResetsIt(t *testing.T) {
	cases := []struct {
		name     string
		instance func(c *net.TCPConn)
	}{
		{"the instance sent a byte unasked", func(c *net.TCPConn) { _, _ = c.Write([]byte("x")) }},
		{"the instance closed it", func(c *net.TCPConn) { _ = c.Close() }},
		{"the instance reset it", func(c *net.TCPConn) { _ = c.SetLinger(0); _ = c.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ic, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer ic.Close()
			var look socketLook
			if !look.quiet(c) {
				t.Fatal("a connection nothing arrived on is not quiet")
			}
			tc.instance(ic.(*net.TCPConn))
			eventstest.Eventually(t, 5*time.Second, func() bool { return !look.quiet(c) }, "the connection is still quiet")
		})
	}
}

// TestALookAtASocketAllocatesOnlyTheFirstTime: the edge looks at a socket once per request (a
// pooled connection taken, a client's at the first write of an answer); each look took the
// socket's RawConn and a closure anew, three allocations a request on the hot path.
func TestALookAtASocketAllocatesOnlyTheFirstTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var look socketLook
	if !look.quiet(c) {
		t.Fatal("a connection nothing arrived on is not quiet")
	}
	if n := testing.AllocsPerRun(100, func() { look.quiet(c) }); n != 0 {
		t.Errorf("a look allocates %v times, want 0 after the first", n)
	}
}
