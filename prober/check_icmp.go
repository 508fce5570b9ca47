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

// echoIdentity draws an echo request's data, 16 random bytes, and its id and sequence number,
// the data's first 4: an error quoting only the request's header (icmpFamily.match) is told by
// them alone, so an off-path host must guess 32 bits to forge one.
func echoIdentity() (id, seq int, token []byte) {
	token = make([]byte, 16)
	_, _ = rand.Read(token)
	return int(token[0])<<8 | int(token[1]), int(token[2])<<8 | int(token[3]), token
}

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

// run checks over a ping socket of its own where the kernel allows them, else over the raw
// socket of its family that the checks in flight share (rawSockets).
func (c *icmpChecker) run(ctx context.Context) Outcome {
	f := family4
	if c.addr.Is6() {
		f = family6
	}
	mode := icmpMode[f.idx].Load()
	if mode == icmpModeUnknown || mode == icmpModePing {
		conn, err := icmp.ListenPacket(f.ping, f.listen)
		if err == nil {
			icmpMode[f.idx].Store(icmpModePing)
			defer conn.Close()
			return c.overPing(ctx, f, conn)
		}
		if mode == icmpModePing {
			return failure(socketClass(err), fmt.Errorf("open ping socket: %w", err))
		}
	}
	return c.overRaw(ctx, f)
}

// socketClass is the class of a failure to open an ICMP socket.
func socketClass(err error) string {
	cl := classify(err)
	if cl == ClassError && errors.Is(err, syscall.EPROTONOSUPPORT) {
		cl = ClassPermission
	}
	return cl
}

// echoRequest encodes the echo request of family f with id, seq and data token.
func (f icmpFamily) echoRequest(id, seq int, token []byte) ([]byte, error) {
	wire, err := (&icmp.Message{Type: f.echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: token}}).Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("encode echo request: %w", err)
	}
	return wire, nil
}

// overPing runs the check over conn, a ping socket of its own, which the kernel hands only the
// replies to its requests.
func (c *icmpChecker) overPing(ctx context.Context, f icmpFamily, conn *icmp.PacketConn) Outcome {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return failure(ClassError, fmt.Errorf("set deadline: %w", err))
		}
	}
	// A context cancelled before the deadline (a stopping worker) ends the wait for the reply
	// then, where it went on to the check's timeout, up to its interval, past StopGrace.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	id, seq, token := echoIdentity()
	wire, err := f.echoRequest(id, seq, token)
	if err != nil {
		return failure(ClassError, err)
	}
	if _, err := conn.WriteTo(wire, &net.UDPAddr{IP: c.addr.AsSlice(), Zone: c.addr.Zone()}); err != nil {
		return failure(classify(err), fmt.Errorf("send echo request: %w", err))
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return failure(classify(err), fmt.Errorf("wait for echo reply: %w", err))
		}
		if v, _ := f.match(buf[:n], c.addr, id, seq, token); v == icmpEchoReply {
			return Outcome{OK: true}
		}
	}
}

// overRaw runs the check over the raw socket of its family that every check in flight shares
// (rawSockets), which hands it the reply to its request, or the error from the path quoting it.
func (c *icmpChecker) overRaw(ctx context.Context, f icmpFamily) Outcome {
	r := &rawSockets[f.idx]
	s, w, err := r.join(f, c.addr)
	if err != nil {
		return failure(socketClass(err), err)
	}
	defer r.leave(s, w)
	wire, err := f.echoRequest(w.id, w.seq, w.token)
	if err != nil {
		return failure(ClassError, err)
	}
	dst := &net.IPAddr{IP: c.addr.AsSlice(), Zone: c.addr.Zone()}
	_, err = s.conn.WriteTo(wire, dst)
	if errors.Is(err, syscall.ENOBUFS) {
		err = f.sendAlone(wire, dst)
	}
	if err != nil {
		return failure(classify(err), fmt.Errorf("send echo request: %w", err))
	}
	// The wait ends with ctx: at its deadline, or before it where it is cancelled (a stopping worker).
	select {
	case a := <-w.answer:
		switch {
		case a.err != nil:
			return failure(classify(a.err), fmt.Errorf("wait for echo reply: %w", a.err))
		case a.verdict == icmpEchoReply:
			return Outcome{OK: true}
		}
		return failure(ClassUnreachable, fmt.Errorf("%v from the path to %s", a.typ, c.addr))
	case <-ctx.Done():
		return failure(ClassTimeout, fmt.Errorf("wait for echo reply: %w", ctx.Err()))
	}
}

// What an ICMP message says of an echo request (icmpFamily.match).
const (
	icmpOther       = iota // not an answer to it: keep waiting
	icmpEchoReply          // its reply
	icmpUnreachable        // an error from the path, quoting it
)

// match tells what the ICMP message b (no IP header), read on a socket of family f, says of the
// echo request sent to dst with id, seq and data token, and for an error its type. A reply is
// told by its data, the token (a ping socket's kernel puts its own id on the wire). An error
// (destination unreachable, time exceeded) is told by the datagram it quotes: the IP header,
// whose destination is dst, and the echo request's header, with id and seq, which is all
// RFC 792 requires a router to quote (the IP header and 8 bytes); data quoted beyond it must
// start as the token does. Where it was told by the token alone, an error from a router that
// quoted no data was never the check's, and the check timed out instead. Only raw sockets read
// errors: a ping socket's kernel delivers none.
func (f icmpFamily) match(b []byte, dst netip.Addr, id, seq int, token []byte) (int, icmp.Type) {
	if len(b) < 8 {
		return icmpOther, nil
	}
	var typ icmp.Type
	switch int(b[0]) {
	case icmpTypeOf(f.reply):
		if bytes.Equal(b[8:], token) {
			return icmpEchoReply, nil
		}
		return icmpOther, nil
	case icmpTypeOf(f.unreach):
		typ = f.unreach
	case icmpTypeOf(f.timeExceed):
		typ = f.timeExceed
	default:
		return icmpOther, nil
	}
	q := b[8:] // the quoted datagram, after the type, code, checksum and 4 bytes unused or length
	var hdr int
	if f.idx == 0 {
		if len(q) < 20 || q[0]>>4 != 4 || q[9] != byte(f.proto) {
			return icmpOther, nil
		}
		hdr = int(q[0]&0x0f) * 4
		if hdr < 20 || !dst.Is4() || [4]byte(q[16:20]) != dst.As4() {
			return icmpOther, nil
		}
	} else {
		if len(q) < 40 || q[0]>>4 != 6 || q[6] != byte(f.proto) || [16]byte(q[24:40]) != dst.As16() {
			return icmpOther, nil
		}
		hdr = 40
	}
	if len(q) < hdr+8 {
		return icmpOther, nil
	}
	e := q[hdr:]
	if int(e[0]) != icmpTypeOf(f.echo) || e[1] != 0 || int(e[4])<<8|int(e[5]) != id || int(e[6])<<8|int(e[7]) != seq {
		return icmpOther, nil
	}
	// A router may quote fewer bytes than were sent, or more (RFC 4884 pads the quote to 128).
	data := e[8:]
	if n := min(len(data), len(token)); !bytes.Equal(data[:n], token[:n]) {
		return icmpOther, nil
	}
	return icmpUnreachable, typ
}

// icmpTypeOf is t's number.
func icmpTypeOf(t icmp.Type) int {
	switch t := t.(type) {
	case ipv4.ICMPType:
		return int(t)
	case ipv6.ICMPType:
		return int(t)
	}
	return -1
}
