// Package source chooses the address a message Detour sends to another DNS server leaves from:
// a NOTIFY to a secondary, an RFC 2136 UPDATE (and the reads around it) to a primary.
package source

import "net/netip"

// For returns the address a message to peer (ip:port) leaves from, for a server that listens
// on listen (ip:port): listen's address, when that is one address of peer's family, since a
// secondary takes NOTIFYs and a primary UPDATEs only from the addresses its ACL names (Knot:
// "ACL, denied, action notify"; BIND's allow-notify, allow-update, update-policy), and a server
// bound to a host's service address beside the host's own otherwise sent them from the one the
// routing table prefers. ok is false (the routing table's choice, as Knot or BIND without a
// source address set) for a server on the wildcard address, a peer of the other family, or
// one beyond the listening address's scope (a loopback or link-local address, from which no
// datagram reaches a peer elsewhere: one listening there behind a port forward has its peers
// take its messages from the host's address).
func For(listen, peer string) (from netip.Addr, ok bool) {
	lp, err := netip.ParseAddrPort(listen)
	if err != nil || lp.Addr().IsUnspecified() {
		return netip.Addr{}, false
	}
	pp, err := netip.ParseAddrPort(peer)
	if err != nil {
		return netip.Addr{}, false
	}
	l, p := lp.Addr().Unmap(), pp.Addr().Unmap()
	switch {
	case l.Is4() != p.Is4(),
		l.IsLoopback() && !p.IsLoopback(),
		l.IsLinkLocalUnicast() && !p.IsLinkLocalUnicast():
		return netip.Addr{}, false
	}
	return lp.Addr(), true
}
