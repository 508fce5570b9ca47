//go:build linux && (amd64 || arm64)

package dnsupdater

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatch is how many datagrams one recvmmsg or sendmmsg moves.
const udpBatch = 32

// udpQueryMax is the largest query read; a longer datagram is not a query Detour answers.
const udpQueryMax = 4096

// pktinfoLen is the room for the control message that tells a datagram's destination address
// (IP_PKTINFO or IPV6_PKTINFO, 32 or 40 bytes).
const pktinfoLen = 64

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2) on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// batch holds the buffers of one socket's batched reads and writes. Its arrays are allocated
// once and reused, so answering costs no allocation.
type batch struct {
	in      [udpBatch]mmsghdr
	inIov   [udpBatch]unix.Iovec
	names   [udpBatch]unix.RawSockaddrInet6
	bufs    [udpBatch][udpQueryMax]byte
	out     [udpBatch]mmsghdr
	outIov  [udpBatch]unix.Iovec
	outBufs [udpBatch][]byte
	// ctrl receives the address each datagram was sent to, when pktinfo is set: a socket bound
	// to the wildcard address sends each reply from it (see replyFrom).
	ctrl    [udpBatch][pktinfoLen]byte
	pktinfo bool
	// recvFn and sendFn are recv and send bound once: a closure made per call would be
	// allocated per call, and its garbage collected under load.
	recvFn, sendFn func(fd uintptr) bool
	// got and errno are what the last recv read; sent of toSend replies went out.
	got          int
	errno        syscall.Errno
	sent, toSend int
	// last is how many datagrams the last recvmmsg that read any returned: 1 when the server
	// keeps up query by query, more when queries queue.
	last int
	// stay, for a second reader, says whether to wait for datagrams: once it is false, a read
	// that finds none returns nothing, rather than waiting (see secondReader).
	stay *atomic.Bool
}

// newBatch returns the buffers of a socket's batches; pktinfo says that the socket tells each
// datagram's destination address (see wantPktinfo).
func newBatch(pktinfo bool) *batch {
	b := &batch{pktinfo: pktinfo}
	for i := range b.in {
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(udpQueryMax)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		if pktinfo {
			b.in[i].hdr.Control = &b.ctrl[i][0]
		}
		b.out[i].hdr.Iov = &b.outIov[i]
		b.out[i].hdr.SetIovlen(1)
		b.outBufs[i] = make([]byte, 0, maxUDPSize)
	}
	b.recvFn, b.sendFn = b.recv, b.send
	return b
}

// serveUDP answers the datagrams of one socket in batches: one recvmmsg takes every query
// waiting (up to udpBatch), one sendmmsg sends their replies.
//
// Both calls pass MSG_DONTWAIT and so never block, and both are made as raw system calls,
// which do not tell the Go scheduler that the goroutine left for the kernel. Through the
// ordinary path, a sendmmsg of a batch (on loopback it also delivers the replies) often lasted
// longer than the scheduler's 20 µs tick: it then took the processor away, handed it to
// another thread and woke its monitor thread at every call. Profiled at saturation, that
// churn was a fifth of the server's CPU; without it the server spends 25 % less CPU per
// query (bench:dns). Waiting for data stays with the network poller (rc.Read parks the
// goroutine when recvmmsg finds nothing).
//
// While this goroutine is busy more than half the time, a second one reads the socket beside
// it (see secondReader).
func (s *Server) serveUDP(c *net.UDPConn, seed uint64) {
	rc, err := c.SyscallConn()
	if err != nil {
		s.serveUDPEach(c, seed)
		return
	}
	pktinfo, err := wantPktinfo(c, rc)
	if err != nil {
		s.log.Warn().Err(err).Msg("udp replies sent from the address the routing table prefers, which may not be the one asked")
	}
	var second *secondReader
	if runtime.GOMAXPROCS(0) > 1 {
		if second, err = s.startSecondReader(c, pktinfo, seed^0xD1B54A32D192ED03); err != nil {
			s.log.Warn().Err(err).Msg("udp socket read by one goroutine only")
		}
	}
	defer second.stop()
	w := s.newWorker(seed)
	b := newBatch(pktinfo)
	var load busyMeter
	waited := time.Now()
	for {
		n, err := b.read(rc)
		if err != nil {
			return // the socket was closed
		}
		read := time.Now()
		b.write(rc, s.answerBatch(w, b, n))
		now := time.Now()
		if busy, ok := load.note(waited, read, now); ok && second != nil {
			second.want(busy)
		}
		waited = now
	}
}

// answerBatch prepares the replies to the n datagrams b read and returns how many there are.
func (s *Server) answerBatch(w *worker, b *batch, n int) int {
	k := 0
	for i := range n {
		h := &b.in[i]
		if h.hdr.Flags&unix.MSG_TRUNC != 0 {
			continue
		}
		remote, ok := sockaddrAddr(&b.names[i])
		if !ok {
			continue
		}
		resp := s.answerUDP(w, b.bufs[i][:h.n], remote)
		if resp == nil {
			continue
		}
		b.outBufs[k] = append(b.outBufs[k][:0], resp...)
		b.outIov[k].Base = &b.outBufs[k][0]
		b.outIov[k].SetLen(len(b.outBufs[k]))
		b.out[k].hdr.Name = h.hdr.Name
		b.out[k].hdr.Namelen = h.hdr.Namelen
		b.out[k].hdr.Control, b.out[k].hdr.Controllen = nil, 0
		if b.pktinfo && h.hdr.Flags&unix.MSG_CTRUNC == 0 && replyFrom(b.ctrl[i][:h.hdr.Controllen]) {
			b.out[k].hdr.Control, b.out[k].hdr.Controllen = h.hdr.Control, h.hdr.Controllen
		}
		k++
	}
	return k
}

// busyWindow is how long the first reader of a socket measures how busy it is before it calls
// the second in or sends it away.
const busyWindow = 10 * time.Millisecond

// The second reader joins when the first was busy (not waiting for a datagram) for at least
// joinBusy of a window, and leaves when it was busy for less than leaveBusy.
const (
	joinBusy  = 0.5
	leaveBusy = 0.25
)

// busyMeter measures the share of a window a reader spends answering rather than waiting.
type busyMeter struct {
	start  time.Time
	waited time.Duration
}

// note adds one batch: the reader waited from waited to read, then answered until now. At the
// end of each window it returns the share of the window spent busy, and ok.
func (m *busyMeter) note(waited, read, now time.Time) (busy float64, ok bool) {
	if m.start.IsZero() {
		m.start = waited
	}
	m.waited += read.Sub(waited)
	span := now.Sub(m.start)
	if span < busyWindow {
		return 0, false
	}
	busy = 1 - float64(m.waited)/float64(span)
	m.start, m.waited = now, 0
	return busy, true
}

// secondReader answers a socket beside its first reader while that one is busy, through a
// duplicate of the socket's descriptor (Go's poller lets one goroutine wait on a descriptor).
// A datagram then readies both, and whichever runs first answers it, as NSD's two server
// processes share one socket (Knot instead binds a socket per UDP worker); while the first
// reader mostly waits, the second sleeps apart, so that a datagram wakes one thread, not two.
//
// Measured on two vCPUs whose wake-ups cost more than an answer (session 21: 83 % of the
// server's CPU in sendmmsg), against one reader in the same rounds: saturation 112,434 against
// 103,792 qps (Knot 102,808), detour-changing 0.96 and 1.01 of the static run against 0.83 and
// 0.93, and the same CPU a query at 27,000 qps (12.37 and 12.96 against 11.93 and 13.12 µs).
// Two readers always waiting on the socket gained as much at saturation but spent 14.45–17.63
// against 12.00–12.67 µs a query at 27,000, and a second reader called in for every batch that
// found a queue, and sent away when it found none, lost at saturation (83,710 against 95,076):
// each call wakes a thread. So it is called in and sent away at most once a busyWindow.
type secondReader struct {
	conn *net.UDPConn
	// on says that the first reader wants it reading; wake calls it in from sleep.
	on   atomic.Bool
	wake chan struct{}
	done chan struct{}
}

// startSecondReader starts a second reader of c, asleep until the first reader calls it in;
// pktinfo says that c tells each datagram's destination address.
func (s *Server) startSecondReader(c *net.UDPConn, pktinfo bool, seed uint64) (*secondReader, error) {
	f, err := c.File()
	if err != nil {
		return nil, fmt.Errorf("duplicate the udp socket: %w", err)
	}
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("duplicate the udp socket: %w", err)
	}
	conn := pc.(*net.UDPConn)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("duplicate the udp socket: %w", err)
	}
	r := &secondReader{conn: conn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		w := s.newWorker(seed)
		b := newBatch(pktinfo)
		b.stay = &r.on
		for range r.wake {
			for r.on.Load() {
				n, err := b.read(rc)
				if err != nil {
					return
				}
				b.write(rc, s.answerBatch(w, b, n))
			}
		}
	}()
	return r, nil
}

// want calls the second reader in or sends it away, as the first reader's busy share says.
func (r *secondReader) want(busy float64) {
	on := r.on.Load()
	switch {
	case !on && busy >= joinBusy:
		r.on.Store(true)
		select {
		case r.wake <- struct{}{}:
		default:
		}
	case on && busy < leaveBusy:
		r.on.Store(false)
	}
}

// stop ends the second reader and waits for it; only the first reader calls it, once.
func (r *secondReader) stop() {
	if r == nil {
		return
	}
	r.on.Store(false)
	_ = r.conn.Close()
	close(r.wake)
	<-r.done
}

// read receives up to udpBatch datagrams, waiting for the first.
func (b *batch) read(rc syscall.RawConn) (int, error) {
	for i := range b.in {
		b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.in[i].hdr.Flags = 0
		if b.pktinfo {
			b.in[i].hdr.SetControllen(pktinfoLen)
		}
	}
	b.got, b.errno = 0, 0
	if err := rc.Read(b.recvFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, nil // a failed receive (e.g. a queued ICMP error): try again
	}
	return b.got, nil
}

// recv is one recvmmsg; it reports false when nothing is waiting, so that rc.Read parks.
//
// Before it parks after a read of one datagram, the thread yields its CPU. A client on this
// machine waiting for a reply (a local resolver, dnsperf) is woken by the sendmmsg that delivered
// it, and the kernel may put it on the sender's CPU, expecting the sender to sleep at once, as
// NSD's and Knot's workers do, straight back in their own wait. Parking a goroutine is not
// sleeping: the thread first runs Go's scheduler (other run queues, the network poller, the
// hand-off of its processor), and the client waits behind it; with the yield it runs first.
// bench:dns at 18,000 qps on two vCPUs (session 19): p99 0.069 against 0.209 ms without it (NSD
// 0.098), 5.0 against 7.0 µs of server CPU a query. Yielding after every send instead cost
// 10–17 % at saturation. After a read of several datagrams clients are queueing queries, both
// CPUs are busy, and a yield gives the CPU away for a whole time slice (perf trace, session 20:
// 0.33 ms on average): yielding there too took detour-changing, which parks between batches, to
// 0.63 and 0.64 of the static run's qps in two holds, against 0.85 and 0.78 without (session 20).
// A reply that leaves through a network card wakes no thread here, and the yield then returns at once.
func (b *batch) recv(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case unix.EAGAIN:
		if b.stay != nil && !b.stay.Load() {
			return true // a second reader sent away: it goes back to sleep
		}
		if b.last <= 1 {
			unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		}
		return false
	case unix.EINTR:
		return false
	}
	b.got, b.errno = int(r), e
	if e == 0 {
		b.last = b.got
	}
	return true
}

// write sends the first k prepared replies; replies the kernel refuses are dropped, as a lost
// datagram would be.
func (b *batch) write(rc syscall.RawConn, k int) {
	b.sent, b.toSend = 0, k
	for b.sent < k {
		if rc.Write(b.sendFn) != nil {
			return
		}
	}
}

// send is one sendmmsg of the replies not sent yet; it reports false when the socket's buffer
// is full, so that rc.Write waits.
func (b *batch) send(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.toSend-b.sent), unix.MSG_DONTWAIT, 0, 0)
	switch {
	case e == unix.EAGAIN || e == unix.EINTR:
		return false
	case e != 0:
		b.sent++ // skip the datagram that failed
	default:
		b.sent += int(r)
	}
	return true
}

// sockaddrAddr reads the address of a raw IPv4 or IPv6 socket address.
func sockaddrAddr(sa *unix.RawSockaddrInet6) (netip.Addr, bool) {
	switch sa.Family {
	case unix.AF_INET:
		v4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrFrom4(v4.Addr), true
	case unix.AF_INET6:
		return netip.AddrFrom16(sa.Addr).Unmap(), true
	}
	return netip.Addr{}, false
}

// wantPktinfo asks the kernel to tell the destination address of each datagram c receives, when
// c is bound to the wildcard address (0.0.0.0 or ::), and reports whether it does. A reply sent
// from such a socket leaves from the address the routing table prefers, not necessarily the one
// the query was sent to, on a host of several addresses (a service address beside the host's,
// an anycast address, IPv6 temporary addresses); a resolver drops it as from an unexpected
// source. Each reply is sent from the address its query was sent to instead (see replyFrom), as
// Knot does. A socket bound to one address needs none of this.
func wantPktinfo(c *net.UDPConn, rc syscall.RawConn) (bool, error) {
	if a, ok := c.LocalAddr().(*net.UDPAddr); !ok || !a.IP.IsUnspecified() {
		return false, nil
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		domain, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			serr = fmt.Errorf("read the socket's domain: %w", err)
			return
		}
		// An IPv6 socket (Go binds 0.0.0.0 as a dual-stack ::) tells the IPv4 datagrams'
		// addresses too, IPv4-mapped, and takes them back so.
		level, opt, name := unix.IPPROTO_IP, unix.IP_PKTINFO, "IP_PKTINFO"
		if domain == unix.AF_INET6 {
			level, opt, name = unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"
		}
		if err := unix.SetsockoptInt(int(fd), level, opt, 1); err != nil {
			serr = fmt.Errorf("set %s: %w", name, err)
		}
	})
	if err == nil {
		err = serr
	}
	return err == nil, err
}

// replyFrom turns ctrl, the control messages received with a datagram, into those of its reply:
// each packet-info message keeps the local address the datagram was sent to (IPv4's
// ipi_spec_dst, which for a unicast datagram is its destination, IPv6's ipi6_addr), the reply's
// source, and loses the interface it came in on, so that the routing table still picks the way
// out, as Knot does; unless that address is an IPv6 link-local one, which names no link of its
// own: the kernel sends from it only on the link it is told (sendmsg refuses it otherwise,
// EINVAL), the one the query came in on. It reports whether ctrl holds such messages and nothing
// else, and so may go with the reply.
func replyFrom(ctrl []byte) bool {
	found := false
	for len(ctrl) > 0 {
		if len(ctrl) < unix.SizeofCmsghdr {
			return false
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		end := int(h.Len)
		if end < unix.SizeofCmsghdr || end > len(ctrl) {
			return false
		}
		data := ctrl[unix.SizeofCmsghdr:end]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			(*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Ifindex = 0
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			if info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0])); !netip.AddrFrom16(info.Addr).IsLinkLocalUnicast() {
				info.Ifindex = 0
			}
		default:
			return false
		}
		found = true
		// The next message starts at the next multiple of the word size.
		ctrl = ctrl[min(len(ctrl), (end+7)&^7):]
	}
	return found
}
