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
