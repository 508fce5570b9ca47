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
			if !quiet(c) {
				t.Fatal("a connection nothing arrived on is not quiet")
			}
			tc.instance(ic.(*net.TCPConn))
			eventstest.Eventually(t, 5*time.Second, func() bool { return !quiet(c) }, "the connection is still quiet")
		})
	}
}
