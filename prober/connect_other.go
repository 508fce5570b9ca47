//go:build !linux

package prober

import (
	"context"
	"net"
	"net/netip"
)

// connectOnly opens a connection to addr and resets it; outside Linux, with net.Dialer.
func connectOnly(ctx context.Context, d *net.Dialer, addr netip.AddrPort) error {
	return dialOnly(ctx, d, addr)
}

// dialHTTP connects to addr for a hand-made HTTP exchange; outside Linux, with net.Dialer.
func dialHTTP(ctx context.Context, addr netip.AddrPort) (httpConn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialTCP(ctx, "tcp", netip.AddrPort{}, addr)
}
