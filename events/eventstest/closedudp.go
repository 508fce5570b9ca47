package eventstest

import (
	"net"
	"testing"
)

// RefusedUDP returns a loopback address whose datagrams are refused (the kernel answers each with
// an ICMP port unreachable) for as long as the test runs, where ClosedPort holds only the TCP
// port: a UDP socket bound to it and connected to 127.0.0.1:9, so that the kernel delivers it
// only datagrams from there, which no test sends from, and hands its port to no other socket. A
// UDP socket opened and closed again leaves its port to the next one on port 0, a test's DNS
// server that then answers, or times out, where the refusal was looked for.
func RefusedUDP(t testing.TB) string {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.LocalAddr().String()
}
