package prober

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// rawICMP is the raw ICMP socket of one address family that the icmp checks in flight share
// where ping sockets are off. The kernel hands every raw socket every ICMP message of the host:
// with a socket each, n checks in flight (a network of n endpoints failing at once) read n²
// messages, and a socket's buffer, full of the others', dropped its own reply. The shared
// socket's reader reads each message once and hands it to the check it answers, found by the
// echo request's id and sequence number (echoKey), once match has it the check's. The first
// check to start while none is in flight opens it, and the last one to end closes it, so a
// prober with no icmp check in flight holds none. It lives in the network namespace of the
// thread that opened it, as a socket of each check did: the prober's.
type rawICMP struct {
	mu   sync.Mutex
	sock *rawSocket // nil while no check is in flight, or after its socket failed
}

// rawSockets are the shared raw sockets, by icmpFamily.idx.
var rawSockets [2]rawICMP

// rawSocket is one raw socket and the checks that use it.
type rawSocket struct {
	conn  *icmp.PacketConn
	users int                  // the checks that joined and have not left
	waits map[uint32]*echoWait // the checks not answered yet, by echoKeyOf
}

// echoWait is one check's echo request, waiting for its answer.
type echoWait struct {
	dst     netip.Addr
	id, seq int
	token   []byte
	answer  chan echoAnswer // buffered: the reader sends at most one, never waiting
}

// echoAnswer is what the shared socket's reader hands a check: a message match told of, or
// the error that ended the reader.
type echoAnswer struct {
	verdict int       // icmpEchoReply or icmpUnreachable
	typ     icmp.Type // for icmpUnreachable
	err     error
}

// join readies a check's echo request to dst on the shared socket of family f, opening it
// where none is open, with an id and sequence number drawn at random (echoIdentity) and held
// by no other check in flight. The check calls leave with what join returns once it ends.
func (r *rawICMP) join(f icmpFamily, dst netip.Addr) (*rawSocket, *echoWait, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sock == nil {
		conn, err := icmp.ListenPacket(f.raw, f.listen)
		if err != nil {
			return nil, nil, fmt.Errorf("open icmp socket: unprivileged ping sockets are off "+
				"(sysctl net.ipv4.ping_group_range must include the prober's group) and raw sockets need root or CAP_NET_RAW: %w", err)
		}
		icmpMode[f.idx].Store(icmpModeRaw)
		if err := f.tune(conn); err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		r.sock = &rawSocket{conn: conn, waits: make(map[uint32]*echoWait)}
		go r.read(r.sock, f)
	}
	s := r.sock
	w := &echoWait{dst: dst, answer: make(chan echoAnswer, 1)}
	for {
		w.id, w.seq, w.token = echoIdentity()
		if _, taken := s.waits[echoKeyOf(w.id, w.seq)]; !taken {
			break
		}
	}
	s.waits[echoKeyOf(w.id, w.seq)] = w
	s.users++
	return s, w, nil
}

// leave ends w's wait on s, answered or not, and closes s when no other check uses it.
func (r *rawICMP) leave(s *rawSocket, w *echoWait) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := echoKeyOf(w.id, w.seq); s.waits[k] == w {
		delete(s.waits, k)
	}
	s.users--
	if s.users == 0 {
		if r.sock == s {
			r.sock = nil
		}
		_ = s.conn.Close()
	}
}

// read hands each message s reads to the check it answers, until s is closed or fails: then
// each check still waiting gets the error, and the next check to join opens another socket.
func (r *rawICMP) read(s *rawSocket, f icmpFamily) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			r.mu.Lock()
			if r.sock == s {
				r.sock = nil
			}
			for k, w := range s.waits {
				w.answer <- echoAnswer{err: err}
				delete(s.waits, k)
			}
			r.mu.Unlock()
			return
		}
		k, ok := f.echoKey(buf[:n])
		if !ok {
			continue
		}
		r.mu.Lock()
		if w := s.waits[k]; w != nil {
			if v, typ := f.match(buf[:n], w.dst, w.id, w.seq, w.token); v != icmpOther {
				w.answer <- echoAnswer{verdict: v, typ: typ}
				delete(s.waits, k)
			}
		}
		r.mu.Unlock()
	}
}

// sendAlone sends wire to dst over a raw socket of family f of its own, closed once it is sent,
// where the shared socket refused it for want of buffer: the kernel charges a request to its
// socket until it leaves the host, and those to networks whose router is gone wait for its
// address (ARP, about 3 s). Some 500 of them (twice net.core.wmem_default) filled the shared
// socket's send buffer, and every check sent meanwhile failed, endpoints that answer too. The
// answer still comes to the shared socket, which is handed every ICMP message of the host.
func (f icmpFamily) sendAlone(wire []byte, dst net.Addr) error {
	conn, err := icmp.ListenPacket(f.raw, f.listen)
	if err != nil {
		return fmt.Errorf("open icmp socket: %w", err)
	}
	defer conn.Close()
	_, err = conn.WriteTo(wire, dst)
	return err
}

// rawReadBuffer is the receive buffer the shared raw socket asks for. The answers to the checks
// sent at once (a worker's due checks, each interval) arrive at once, and one socket holds them
// all, where each check's socket held a 208 KiB buffer of its own. Linux caps the size at
// net.core.rmem_max (often 208 KiB) but for root, which forceReadBuffer gets it for.
const rawReadBuffer = 4 << 20

// tune readies conn, a raw socket of family f, to be shared: rawReadBuffer, and, where the
// system filters ICMP types for raw sockets (Linux; IPv6 on most others), a filter passing only
// echo replies and the errors a check can be told of: a raw socket is handed every echo
// request of the host too, the checks' own included, which the reader would read past.
func (f icmpFamily) tune(conn *icmp.PacketConn) error {
	if f.idx == 0 {
		p := conn.IPv4PacketConn()
		if err := setReadBuffer(p.PacketConn, rawReadBuffer); err != nil {
			return err
		}
		var only ipv4.ICMPFilter
		only.SetAll(true)
		for _, t := range []ipv4.ICMPType{ipv4.ICMPTypeEchoReply, ipv4.ICMPTypeDestinationUnreachable, ipv4.ICMPTypeTimeExceeded} {
			only.Accept(t)
		}
		_ = p.SetICMPFilter(&only) // without it, the reader reads past what it would have blocked
		return nil
	}
	p := conn.IPv6PacketConn()
	if err := setReadBuffer(p.PacketConn, rawReadBuffer); err != nil {
		return err
	}
	var only ipv6.ICMPFilter
	only.SetAll(true)
	for _, t := range []ipv6.ICMPType{ipv6.ICMPTypeEchoReply, ipv6.ICMPTypeDestinationUnreachable, ipv6.ICMPTypeTimeExceeded} {
		only.Accept(t)
	}
	_ = p.SetICMPFilter(&only) // without it, the reader reads past what it would have blocked
	return nil
}

// setReadBuffer asks for size bytes of receive buffer on c, a raw socket (a *net.IPConn): past
// net.core.rmem_max where forceReadBuffer can, otherwise as SetReadBuffer does, which that caps.
func setReadBuffer(c net.PacketConn, size int) error {
	ip, ok := c.(*net.IPConn)
	if !ok {
		return fmt.Errorf("set icmp socket's read buffer: a %T, not an IP socket", c)
	}
	if forceReadBuffer(ip, size) {
		return nil
	}
	if err := ip.SetReadBuffer(size); err != nil {
		return fmt.Errorf("set icmp socket's read buffer: %w", err)
	}
	return nil
}

// echoKeyOf is an echo request's id and sequence number as one number.
func echoKeyOf(id, seq int) uint32 { return uint32(id)<<16 | uint32(seq) }

// echoKey is the id and sequence number (echoKeyOf) of the echo request that the ICMP message
// b (no IP header), read on a raw socket of family f, answers or quotes: a reply's own, or
// those of the echo header an error (destination unreachable, time exceeded) quotes after the
// IP header. It is false for any other message, and for one too short to carry them. It only
// finds the check a message may be for: match tells whether it is.
func (f icmpFamily) echoKey(b []byte) (uint32, bool) {
	if len(b) < 8 {
		return 0, false
	}
	switch int(b[0]) {
	case icmpTypeOf(f.reply):
		return binary.BigEndian.Uint32(b[4:8]), true
	case icmpTypeOf(f.unreach), icmpTypeOf(f.timeExceed):
	default:
		return 0, false
	}
	q := b[8:] // the quoted datagram
	hdr := 40
	if f.idx == 0 {
		if len(q) == 0 {
			return 0, false
		}
		hdr = int(q[0]&0x0f) * 4
	}
	if len(q) < hdr+8 {
		return 0, false
	}
	return binary.BigEndian.Uint32(q[hdr+4 : hdr+8]), true
}
