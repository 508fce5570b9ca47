package prober

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ICMP socket modes, tried in this order: unprivileged ping sockets (allowed by the kernel's
// net.ipv4.ping_group_range), then raw sockets (root or CAP_NET_RAW).
const (
	icmpModeUnknown int32 = iota // nothing tried yet
	icmpModePing
	icmpModeRaw
)

// icmpMode remembers, per address family, which socket kind worked, so later checks skip the
// one the kernel refused.
var icmpMode [2]atomic.Int32

var icmpSeq atomic.Uint32

type icmpChecker struct {
	addr netip.Addr
}

func newICMPChecker(t Target) *icmpChecker {
	return &icmpChecker{addr: t.Dial.Addr().Unmap()}
}

type icmpFamily struct {
	idx        int
	ping, raw  string
	listen     string
	proto      int
	echo       icmp.Type
	reply      icmp.Type
	unreach    icmp.Type
	timeExceed icmp.Type
}

var (
	family4 = icmpFamily{idx: 0, ping: "udp4", raw: "ip4:icmp", listen: "0.0.0.0", proto: 1,
		echo: ipv4.ICMPTypeEcho, reply: ipv4.ICMPTypeEchoReply, unreach: ipv4.ICMPTypeDestinationUnreachable, timeExceed: ipv4.ICMPTypeTimeExceeded}
	family6 = icmpFamily{idx: 1, ping: "udp6", raw: "ip6:ipv6-icmp", listen: "::", proto: 58,
		echo: ipv6.ICMPTypeEchoRequest, reply: ipv6.ICMPTypeEchoReply, unreach: ipv6.ICMPTypeDestinationUnreachable, timeExceed: ipv6.ICMPTypeTimeExceeded}
)

// listenICMP opens an ICMP socket of the family, trying ping sockets first, then raw ones.
func listenICMP(f icmpFamily) (*icmp.PacketConn, bool, error) {
	mode := icmpMode[f.idx].Load()
	if mode == icmpModeUnknown || mode == icmpModePing {
		c, err := icmp.ListenPacket(f.ping, f.listen)
		if err == nil {
			icmpMode[f.idx].Store(icmpModePing)
			return c, false, nil
		}
		if mode == icmpModePing {
			return nil, false, fmt.Errorf("open ping socket: %w", err)
		}
	}
	c, err := icmp.ListenPacket(f.raw, f.listen)
	if err == nil {
		icmpMode[f.idx].Store(icmpModeRaw)
		return c, true, nil
	}
	return nil, false, fmt.Errorf("open icmp socket: unprivileged ping sockets are off "+
		"(sysctl net.ipv4.ping_group_range must include the prober's group) and raw sockets need root or CAP_NET_RAW: %w", err)
}

func (c *icmpChecker) run(ctx context.Context) Outcome {
	f := family4
	if c.addr.Is6() {
		f = family6
	}
	conn, raw, err := listenICMP(f)
	if err != nil {
		cl := classify(err)
		if cl == ClassError && errors.Is(err, syscall.EPROTONOSUPPORT) {
			cl = ClassPermission
		}
		return failure(cl, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return failure(ClassError, fmt.Errorf("set deadline: %w", err))
		}
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	id := int(token[0])<<8 | int(token[1])
	seq := int(icmpSeq.Add(1) & 0xffff)
	msg := icmp.Message{Type: f.echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: token}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return failure(ClassError, fmt.Errorf("encode echo request: %w", err))
	}
	var dst net.Addr = &net.IPAddr{IP: c.addr.AsSlice(), Zone: c.addr.Zone()}
	if !raw {
		dst = &net.UDPAddr{IP: c.addr.AsSlice(), Zone: c.addr.Zone()}
	}
	if _, err := conn.WriteTo(wire, dst); err != nil {
		return failure(classify(err), fmt.Errorf("send echo request: %w", err))
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return failure(classify(err), fmt.Errorf("wait for echo reply: %w", err))
		}
		m, err := icmp.ParseMessage(f.proto, buf[:n])
		if err != nil {
			continue // not a message we can read: keep waiting for ours
		}
		switch m.Type {
		case f.reply:
			if e, ok := m.Body.(*icmp.Echo); ok && bytes.Equal(e.Data, token) {
				return Outcome{OK: true}
			}
		case f.unreach, f.timeExceed:
			// The quoted datagram holds our request: its token tells it is ours.
			if bytes.Contains(buf[:n], token[:8]) {
				return failure(ClassUnreachable, fmt.Errorf("%v from the path to %s", m.Type, c.addr))
			}
		}
	}
}
