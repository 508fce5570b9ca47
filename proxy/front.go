package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The front accepts the connections of an HTTP app listener and serves their plain HTTP/1.1 GET
// requests itself, on the connection's own goroutine, answering exactly as net/http would. At
// the first request it does not serve (see parseHead) it hands the connection, with what it has
// buffered, to the net/http server, which serves the rest of the connection: httpServer.srv when
// the front served no request on it, else httpServer.h1, for which it is no longer at its start.

// frontConns tracks the connections the front serves, so that a shutdown closes the idle ones
// at once and lets the busy ones finish their answer.
type frontConns struct {
	mu      sync.Mutex
	idle    map[net.Conn]*atomic.Bool // every open connection: true while it waits for a request
	closing atomic.Bool
	wg      sync.WaitGroup
}

// add starts tracking c, idle, and returns its flag; nil means it may not be served, as the edge
// is shutting down.
func (f *frontConns) add(c net.Conn) *atomic.Bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return nil
	}
	idle := new(atomic.Bool)
	idle.Store(true)
	f.idle[c] = idle
	f.wg.Add(1)
	return idle
}

func (f *frontConns) remove(c net.Conn) {
	f.mu.Lock()
	delete(f.idle, c)
	f.mu.Unlock()
	f.wg.Done()
}

// rest marks the connection whose flag is idle as waiting for a request and reports whether it
// may, which it may not once the edge is shutting down. Either rest sees closing set or
// shutdown sees idle set, so no idle connection outlives a shutdown.
func (f *frontConns) rest(idle *atomic.Bool) bool {
	idle.Store(true)
	return !f.closing.Load()
}

// shutdown closes the idle connections and waits for the busy ones to finish their answer,
// closing them when ctx ends first, without waiting any longer, as http.Server.Close does.
func (f *frontConns) shutdown(ctx context.Context) {
	f.mu.Lock()
	f.closing.Store(true)
	for c, idle := range f.idle {
		if idle.Load() {
			_ = c.Close()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	for c := range f.idle {
		_ = c.Close()
	}
	f.mu.Unlock()
}

// tunnels tracks the connections net/http handed over to a handler (an upgrade ReverseProxy
// relays, a WebSocket), which http.Server's Shutdown and Close no longer see: they end with the
// listener, as a TCP listener's connections do, or they would be relayed to an instance of an
// app the edge no longer fronts for as long as both sides keep them open.
type tunnels struct {
	mu     sync.Mutex
	conns  map[*guardedConn]struct{}
	closed bool
}

// add tracks g, or closes it when the listener has stopped.
func (t *tunnels) add(g *guardedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = g.Conn.Close()
		return
	}
	if t.conns == nil {
		t.conns = map[*guardedConn]struct{}{}
	}
	t.conns[g] = struct{}{}
	g.tunnels = t
}

func (t *tunnels) remove(g *guardedConn) {
	t.mu.Lock()
	delete(t.conns, g)
	t.mu.Unlock()
}

// close closes the connections tracked and those handed over from now on.
func (t *tunnels) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for g := range t.conns {
		_ = g.Conn.Close()
	}
	clear(t.conns)
}

// handoff is the listener the net/http server accepts the connections the front passes on from.
type handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// pass gives c to the net/http server, or closes it when the server has stopped.
func (h *handoff) pass(c net.Conn) {
	select {
	case h.conns <- c:
	case <-h.done:
		_ = c.Close()
	}
}

// clientConn is a client's connection whose every write must progress within write, so that a
// client that stops reading frees the edge's connection upstream. On an HTTP/2 connection it
// also follows the frames written (frames), for streamWriter: a client that grants small
// windows takes a stream's answer a few bytes at a time, and each write to the connection
// progresses though no handler's write completes. A DATA frame's bytes are known to be a
// stream's only while that stream is the one the connection is answering (answering), as a
// stream's answer bytes go out only while its handler writes or flushes, or within
// client_write of its handler's end.
type clientConn struct {
	net.Conn
	write time.Duration
	// release frees the connection's place under the listener's limits (see app.admit).
	release func()
	// http1 is set from the first write on when it is an HTTP/1 answer's; otherwise the
	// connection speaks HTTP/2 (the server's preface, a SETTINGS frame, comes first) and
	// frames follows what is written.
	http1, started bool
	frames         frameWatch
	// answering counts the streams whose answer bytes may be being written (see streamWriter).
	answering atomic.Int32
	// dataAt is when a DATA frame's bytes were last written while a single stream was being
	// answered, in Unix nanoseconds.
	dataAt atomic.Int64
}

func (c *clientConn) Write(p []byte) (int, error) {
	if c.write <= 0 {
		// No streamWriter reads dataAt: the frames need not be followed.
		return c.Conn.Write(p)
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.write))
	if c.http1 {
		return c.Conn.Write(p)
	}
	sole := c.answering.Load() <= 1
	n, err := c.Conn.Write(p)
	if !c.started && n > 0 {
		c.started, c.http1 = true, p[0] == 'H'
	}
	// A stream that began to be answered while p was written saw the count rise: the bytes
	// are credited to the one answered before and after.
	if !c.http1 && c.frames.feed(p[:n]) && sole && c.answering.Load() <= 1 {
		c.dataAt.Store(time.Now().UnixNano())
	}
	return n, err
}

// frameWatch follows a stream of HTTP/2 frames (RFC 9113 §4.1) written in pieces of any size.
type frameWatch struct {
	head [9]byte
	n    int   // bytes of head gathered
	left int64 // bytes of the current frame's payload still to come
	data bool  // the current frame is a DATA frame
}

// feed follows p, the next bytes of the stream, and reports whether any were a DATA frame's
// payload.
func (w *frameWatch) feed(p []byte) bool {
	moved := false
	for len(p) > 0 {
		if w.left > 0 {
			k := min(int64(len(p)), w.left)
			moved = moved || w.data
			w.left -= k
			p = p[k:]
			continue
		}
		k := copy(w.head[w.n:], p)
		w.n += k
		p = p[k:]
		if w.n == len(w.head) {
			w.n = 0
			w.left = int64(w.head[0])<<16 | int64(w.head[1])<<8 | int64(w.head[2])
			w.data = w.head[3] == 0x0 // DATA
		}
	}
	return moved
}

// Close closes the connection and frees its place under the listener's limits, on whichever
// path it ends: the front's, net/http's, or a tunnel's.
func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

func (c *clientConn) CloseWrite() error {
	return closeWrite(c.Conn)
}

// SyscallConn gives the socket under c, which ended looks at.
func (c *clientConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// closeWrite half-closes c as a TCP connection does (CloseWrite), where c can; elsewhere it does
// nothing. The wrappers of a connection the edge hands to net/http pass it on, so that net/http
// half-closes through them as it does a plain TCP connection.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// accept serves the listener's connections until it is closed.
func (s *httpServer) accept() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Like net/http: a failed accept (out of descriptors, say) is retried after a pause.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.app.log.Debug().Err(err).Dur("duration", delay).Msg("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		release := s.app.admit(s.stopped, c)
		if release == nil {
			continue
		}
		c = &clientConn{Conn: c, write: s.app.pol.timeouts.ClientWrite.D(), release: release}
		idle := s.front.add(c)
		if idle == nil {
			_ = c.Close()
			continue
		}
		go s.serveConn(c, idle)
	}
}

// leanConn is one client connection the front serves.
type leanConn struct {
	app  *app
	br   *bufio.Reader
	bw   *bufio.Writer
	head reqHead
	resp respHead
	// declared are the trailers the answer relayed announced in its head, and relays.
	declared []string
	// client and node are the client's address as X-Forwarded-For and Forwarded's "for" show it.
	client, node string
	// host is the Host of the last request, f its forwarding headers.
	host    string
	f       forwarding
	closing *atomic.Bool
	scratch []byte
	// conn is the client's connection and headLen the length of the request head being served,
	// buffered in br; gone is set when the client left while its request waited, halfClosed
	// when it half-closed the connection before any of its answer was written (see watch).
	conn       net.Conn
	headLen    int
	gone       bool
	halfClosed bool
	// sent is set once a write of the answer reached the client's connection; midAnswer while
	// the answer relayed may not end with the next write (see Write).
	sent, midAnswer bool
	// look is the look at the first write of an answer (see Write).
	look socketLook
	// up is the connection whose answer's head is being read; unwatch, once an interim answer
	// reached the client, stops watching the client until the final one arrives.
	up      *upConn
	unwatch func()
	// relayed is set once an interim answer to the request reached the client, after which
	// it goes to no other target.
	relayed bool
}

// leanReaders and leanWriters hold the buffers of the connections the front served: an edge's
// listeners are checked by every prober of every region on a new connection per check, and a
// connection's buffers would otherwise be most of what a check allocates. A reader handed to
// net/http with its connection stays with it.
var (
	leanReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLeanHead) }}
	leanWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

// serveConn serves c, whose flag in s.front is idle, until the client closes it or sends a
// request the front leaves to net/http.
func (s *httpServer) serveConn(c net.Conn, idle *atomic.Bool) {
	lc := &leanConn{app: s.app, br: leanReaders.Get().(*bufio.Reader), bw: leanWriters.Get().(*bufio.Writer),
		closing: &s.front.closing, conn: c}
	lc.br.Reset(c)
	lc.bw.Reset(lc)
	lc.client, _, _ = net.SplitHostPort(c.RemoteAddr().String())
	lc.node = lc.client
	if lc.client == "" {
		lc.client = c.RemoteAddr().String()
		lc.node = lc.client
	}
	if strings.Contains(lc.client, ":") {
		lc.node = `"[` + lc.client + `]"`
	}
	pass, served := false, false
	// headBy is when the head being read must have come, as net/http's server counts
	// client_header: from the connection's start for its first request, from the first byte
	// of a later one. A head handed to net/http keeps it (guardedConn.headBy).
	headBy := time.Now().Add(s.srv.ReadHeaderTimeout)
	defer func() {
		if v := recover(); v != nil {
			// As net/http does, a panic ends the connection, not the edge. Its reader and
			// writer are left to the collector, not pooled: a goroutine of the request (the
			// watch on a client waiting for an interim answer) may still be using them, and
			// another connection would be handed a buffer this one's bytes still land in.
			s.app.log.Error().Interface("panic", v).Str("stack", string(debug.Stack())).Msg("request panicked")
			s.front.remove(c)
			_ = c.Close()
			return
		}
		s.front.remove(c)
		lc.bw.Reset(nil)
		leanWriters.Put(lc.bw)
		if pass {
			to := s.handoff
			if served {
				to = s.h1Handoff
			}
			g := &guardedConn{Conn: c, r: lc.br, max: s.app.pol.maxHeaderBytes, h2c: !served}
			g.headBy.Store(headBy.UnixNano())
			to.pass(g)
		} else {
			_ = c.Close()
			lc.br.Reset(nil)
			leanReaders.Put(lc.br)
		}
	}()
	for {
		if lc.br.Buffered() == 0 {
			wait := headBy
			if served {
				wait = time.Now().Add(s.srv.IdleTimeout)
			}
			_ = c.SetReadDeadline(wait)
			if _, err := lc.br.Peek(1); err != nil {
				return
			}
		}
		if served {
			headBy = time.Now().Add(s.srv.ReadHeaderTimeout)
		}
		idle.Store(false)
		b, _ := lc.br.Peek(lc.br.Buffered())
		n := headEnd(b)
		if n == 0 {
			_ = c.SetReadDeadline(headBy)
			var err error
			if n, err = peekHead(lc.br); err != nil {
				return
			}
		}
		if n > 0 {
			b, _ = lc.br.Peek(n)
		}
		if n <= 0 || n > s.app.pol.maxHeaderBytes || !parseHead(b, &lc.head) {
			pass = true
			return
		}
		lc.headLen = n
		keep := lc.serve()
		served = true
		_, _ = lc.br.Discard(n)
		if !keep || !s.front.rest(idle) {
			return
		}
	}
}

// peekHead reads until br's buffer holds a complete request head and returns its length, or 0
// when the head does not fit and -1 when it has bare LF line ends (headEnd).
func peekHead(br *bufio.Reader) (int, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if n := headEnd(b); n != 0 {
			return n, nil
		}
		if len(b) == br.Size() {
			return 0, nil
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return 0, err
		}
	}
}

// leanGet is the request http.ReadResponse reads the answers to the front's requests for.
var leanGet = &http.Request{Method: http.MethodGet}

// serve proxies the parsed request as the policy says and reports whether the connection stays
// open.
func (lc *leanConn) serve() bool {
	if lc.head.ping {
		return lc.pong()
	}
	a := lc.app
	if string(lc.head.host) != lc.host {
		lc.host = string(lc.head.host)
		lc.f = forwarding{xff: lc.client, xfh: lc.host, xfp: "http",
			fwd: "for=" + lc.node + ";host=" + quoteForwarded(lc.host) + ";proto=http"}
	}
	rt := a.route.Load()
	plan := a.plan(rt, false)
	rh := a.pol.timeouts.ResponseHeader.D()
	var keep bool
	lc.gone, lc.halfClosed, lc.relayed, lc.sent, lc.midAnswer = false, false, false, false, false
	err := a.forward(func() bool { return lc.gone }, rt, plan, rt.retry[http.MethodGet], func() bool { return !lc.relayed },
		func(at *attempt) error {
			t := at.t
			pool, hop := a.pool, ""
			if t.Secondary {
				pool, hop = a.peerPool, a.edge.name
			}
			uc, err := pool.send(context.Background(), t.Addr, func(bw *bufio.Writer) { lc.writeUpstream(bw, hop) }, rh, true, lc.watch)
			if err != nil {
				return err
			}
			if lc.gone {
				// The client left as the answer arrived: watch put uc's deadline in the past,
				// so uc is neither relayed on nor pooled, where the next request would fail.
				uc.abandon()
				return errClientGone
			}
			keep, err = lc.answer(uc, pool, t.Addr, at)
			return err
		})
	if err == nil {
		return keep
	}
	if lc.gone {
		return false
	}
	return lc.fail(err)
}

// pong answers a ping as the app's handler does through net/http, byte for byte but the Date:
// 204, naming this edge, whatever its routes.
func (lc *leanConn) pong() bool {
	keep := lc.keep()
	lc.statusLine(http.StatusNoContent)
	writeField(lc.bw, HeaderEdge, lc.app.edge.name)
	lc.endHead(false, "", false, keep)
	return lc.bw.Flush() == nil && keep
}

// watch watches the client while its request waits for a slow answer on uc: when the client
// closes its connection, uc's wait ends and the request is abandoned, as net/http's server
// cancels a request whose client went away. Bytes the client sends meanwhile (a pipelined
// request) stay buffered, and the connection is still watched past them, as net/http's server
// watches past a pipelined request it already read: a client that pipelined its next request
// and then left is gone too. Only once br's buffer is full is it no longer watched. The
// returned function stops watching; the lean path pays for the watcher only when an answer is
// slow or starts with an interim one (leanConn.interim).
//
// A client that half-closes its connection before any of its answer was written (nc -N, an
// HTTP/1.0 script) will send nothing more but may still read: that end is not its leaving, and
// the request is served to its end, as HAProxy serves it (a reset or a failed write to the
// client ends it then); an end found once some of the answer was written is the client's
// leaving, unless it had half-closed before (found by a watch or by Write).
func (lc *leanConn) watch(uc *upConn) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	answering := lc.sent
	// The client is watched until stop, not until the deadline its head was read under
	// (client_header, or client_idle when it came at once), which a slow answer outlasts.
	_ = lc.conn.SetReadDeadline(time.Time{})
	go func() {
		defer close(done)
		for {
			_, err := lc.br.Peek(max(lc.headLen, lc.br.Buffered()) + 1)
			if err == nil {
				continue // more of what the client pipelined
			}
			switch {
			case err == io.EOF && (!answering || lc.halfClosed):
				// A half-close: the client is gone only once it resets the connection.
				lc.halfClosed = true
				if !resetWhileHalfClosed(lc.conn, stopped) {
					return
				}
			case err == bufio.ErrBufferFull || isTimeout(err):
				return
			}
			lc.gone = true
			_ = uc.c.SetDeadline(time.Unix(1, 0))
			return
		}
	}()
	return func() {
		close(stopped)
		_ = lc.conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = lc.conn.SetReadDeadline(time.Time{})
		// The peek may have moved the head to the start of br's buffer, where lc.head's slices
		// no longer point: they are taken again, for a request sent again to the next target.
		b, _ := lc.br.Peek(lc.headLen)
		parseHead(b, &lc.head)
	}
}

// Write writes p to the client's connection, through lc.bw. The first write of an answer that
// may not end it (midAnswer: an interim answer, a body longer than lc.bw holds, a stream)
// looks first, without waiting, for the client's end: found then, before any of the answer
// reached the client, it is a half-close, which the watch of a pause later in the answer would
// otherwise find only then and take for the client's leaving. An answer written in one write
// (most) costs no look.
func (lc *leanConn) Write(p []byte) (int, error) {
	if !lc.sent {
		lc.sent = true
		lc.halfClosed = lc.halfClosed || lc.midAnswer && lc.look.ended(lc.conn)
	}
	return lc.conn.Write(p)
}

// answer relays the answer arriving on uc and reports whether the client's connection stays
// open; it returns an error, having closed uc and written nothing, when the answer's head cannot
// be read in time or its status is retry_on's and retryStatus is set.
func (lc *leanConn) answer(uc *upConn, pool *connPool, addr string, at *attempt) (bool, error) {
	n, err := peekHead(uc.br)
	if err == nil && n > 0 {
		if b, _ := uc.br.Peek(n); parseRespHead(b, &lc.resp) {
			_ = uc.c.SetReadDeadline(time.Time{})
			uc.headRead()
			lc.app.answered(at, lc.resp.code)
			if lc.app.retryAnswer(at, lc.resp.code, !lc.relayed) {
				uc.abandon()
				return false, &statusError{lc.resp.code}
			}
			uc.limit.client = lc // until the body is read (see headLimit)
			keep, err := lc.relayPlain(uc, n, pool, addr)
			lc.app.noteBodyTimeout(at.t, err)
			return keep, nil
		}
	}
	var resp *http.Response
	if err == nil {
		lc.up = uc
		resp, err = uc.readFinal(context.Background(), leanGet, lc.interim)
		lc.up = nil
		if lc.unwatch != nil {
			lc.unwatch()
			lc.unwatch = nil
		}
	}
	_ = uc.c.SetReadDeadline(time.Time{})
	if err != nil || lc.gone {
		// A client that left after an interim answer put uc's deadline in the past: uc is
		// neither relayed on nor pooled.
		uc.abandon()
		if lc.gone {
			return false, errClientGone
		}
		return false, headerTimeout(err)
	}
	lc.app.answered(at, resp.StatusCode)
	if lc.app.retryAnswer(at, resp.StatusCode, !lc.relayed) {
		uc.abandon()
		return false, &statusError{resp.StatusCode}
	}
	uc.limit.client = lc // until the body is read (see headLimit)
	keep, err := lc.relay(resp, uc, pool, addr)
	lc.app.noteBodyTimeout(at.t, err)
	return keep, nil
}

// relayPlain relays an answer parseRespHead accepted, whose head is the first n bytes buffered
// on uc, as net/http answers for the fast path's relay, and reports whether the client's
// connection stays open, and the error of a read of the body that broke it off.
func (lc *leanConn) relayPlain(uc *upConn, n int, pool *connPool, addr string) (bool, error) {
	h := &lc.resp
	keep := lc.keep()
	lc.statusLine(h.code)
	for _, f := range h.fields {
		lc.scratch = appendCanonical(lc.scratch[:0], f.name)
		lc.scratch = append(lc.scratch, ": "...)
		lc.scratch = append(lc.scratch, f.value...)
		lc.scratch = append(lc.scratch, "\r\n"...)
		_, _ = lc.bw.Write(lc.scratch)
	}
	lc.endHead(h.hasDate, "", false, keep)
	_, _ = uc.br.Discard(n)
	left := h.length
	lc.midAnswer = true
	var rerr error
	for left > 0 {
		if uc.br.Buffered() == 0 {
			if _, rerr = uc.br.Peek(1); rerr != nil {
				break
			}
		}
		p, _ := uc.br.Peek(int(min(int64(uc.br.Buffered()), left)))
		if _, err := lc.bw.Write(p); err != nil {
			break
		}
		_, _ = uc.br.Discard(len(p))
		left -= int64(len(p))
	}
	uc.bodyRead()
	lc.midAnswer = false
	if err := lc.bw.Flush(); err != nil || left > 0 {
		uc.abandon()
		return false, rerr
	}
	pool.put(addr, uc)
	return keep, nil
}

// writeUpstream writes the request head sent upstream, as writeHead does for net/http's requests.
func (lc *leanConn) writeUpstream(bw *bufio.Writer, hop string) {
	h := &lc.head
	_, _ = bw.WriteString("GET ")
	_, _ = bw.Write(h.target)
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.Write(h.host)
	_, _ = bw.WriteString("\r\n")
	for _, f := range h.fields {
		lc.scratch = appendCanonical(lc.scratch[:0], f.name)
		if isHop[string(lc.scratch)] || h.listed(f.name) || dropped(f.name, lc.app.pol.underscores) {
			continue
		}
		_, _ = bw.Write(lc.scratch)
		_, _ = bw.WriteString(": ")
		_, _ = bw.Write(f.value)
		_, _ = bw.WriteString("\r\n")
	}
	if h.trailers {
		writeField(bw, "Te", "trailers")
	}
	for i, v := range lc.f.values() {
		writeField(bw, forwardingHeaders[i], v)
	}
	if hop != "" {
		writeField(bw, HeaderForwardedBy, hop)
	}
	_, _ = bw.WriteString("\r\n")
}

// fail answers 502 as app.fail does, logging the reason.
func (lc *leanConn) fail(err error) bool {
	a := lc.app
	a.metrics.failed()
	path := ""
	if u, perr := url.ParseRequestURI(string(lc.head.target)); perr == nil {
		path = u.Path
	}
	a.logFailure(http.MethodGet, path, err)
	body := failBody(http.StatusBadGateway)
	keep := lc.keep()
	lc.statusLine(http.StatusBadGateway)
	writeField(lc.bw, "Content-Type", "text/plain; charset=utf-8")
	lc.endHead(false, strconv.Itoa(len(body)), false, keep)
	_, _ = lc.bw.WriteString(body)
	return lc.bw.Flush() == nil && keep
}

// keep reports whether the connection stays open after this answer.
func (lc *leanConn) keep() bool { return !lc.head.close && !lc.closing.Load() }

func (lc *leanConn) statusLine(code int) {
	lc.scratch = append(lc.scratch[:0], "HTTP/1.1 "...)
	lc.scratch = strconv.AppendInt(lc.scratch, int64(code), 10)
	lc.scratch = append(lc.scratch, ' ')
	if text := http.StatusText(code); text != "" {
		lc.scratch = append(lc.scratch, text...)
	} else {
		lc.scratch = append(lc.scratch, "status code "...)
		lc.scratch = strconv.AppendInt(lc.scratch, int64(code), 10)
	}
	lc.scratch = append(lc.scratch, "\r\n"...)
	_, _ = lc.bw.Write(lc.scratch)
}

// endHead writes the fields net/http adds to an answer, Date when hasDate is false, then ends
// the head: Content-Length when length is set, chunked otherwise when chunked is set.
func (lc *leanConn) endHead(hasDate bool, length string, chunked, keep bool) {
	if length != "" {
		writeField(lc.bw, "Content-Length", length)
	} else if chunked {
		writeField(lc.bw, "Transfer-Encoding", "chunked")
	}
	if !hasDate {
		lc.scratch = append(lc.scratch[:0], "Date: "...)
		lc.scratch = time.Now().UTC().AppendFormat(lc.scratch, http.TimeFormat)
		lc.scratch = append(lc.scratch, "\r\n"...)
		_, _ = lc.bw.Write(lc.scratch)
	}
	if !keep {
		writeField(lc.bw, "Connection", "close")
	}
	_, _ = lc.bw.WriteString("\r\n")
}

// writeResponseHead writes resp's status and header fields, without the ones suppressed for
// its status, and announces its trailers (lc.declared); contentType, when set, is the sniffed Content-Type.
func (lc *leanConn) writeResponseHead(resp *http.Response, contentType string) {
	lc.statusLine(resp.StatusCode)
	noBody := !bodyAllowed(resp.StatusCode)
	for k, vs := range resp.Header {
		if noBody && (k == "Content-Length" || k == "Transfer-Encoding" || resp.StatusCode == http.StatusNotModified && k == "Content-Type") {
			continue
		}
		// net/http reads a name with a space before its colon ("Content-Length : 5") as a
		// field of its own and drops it as it writes a head, as every other path does; RFC
		// 9112 §5.1 has a proxy remove the space, and a client that does would take it for
		// the field it names, framing included.
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			// A folded value may end in a space, trimmed as net/http's server trims it.
			writeField(lc.bw, k, textproto.TrimString(v))
		}
	}
	for _, k := range lc.declared {
		writeField(lc.bw, "Trailer", k)
	}
	if contentType != "" {
		writeField(lc.bw, "Content-Type", contentType)
	}
}

// bodyAllowed reports whether an answer with status code may have a body (RFC 9110 §6.4.1).
func bodyAllowed(code int) bool {
	return !(code >= 100 && code < 200 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// sniff returns the Content-Type net/http would add to resp given the first bytes p of its
// body, or "" when it adds none.
func sniff(resp *http.Response, p []byte) string {
	if _, ok := resp.Header["Content-Type"]; ok || len(p) == 0 || resp.Header.Get("Content-Encoding") != "" {
		return ""
	}
	return http.DetectContentType(p)
}

// netHTTPHeld is the most of an answer's body net/http's server holds before it writes the
// head: a handler that wrote no more and did not flush is answered with a Content-Length it
// counts, a longer answer of no Content-Length field is chunked.
const netHTTPHeld = 2 << 10

// relay writes resp to the client as net/http answers for the fast path's relay, returns the
// connection upstream to the pool when it is reusable, and reports whether the client's stays
// open, and the error that broke the answer off.
func (lc *leanConn) relay(resp *http.Response, uc *upConn, pool *connPool, addr string) (bool, error) {
	listed := removeHop(resp.Header)
	dropTrailers(resp.Trailer, listed)
	lc.declared = lc.declared[:0]
	for k := range resp.Trailer {
		lc.declared = append(lc.declared, k)
	}
	keep := lc.keep()
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	lc.midAnswer = true
	var err error
	_, hasDate := resp.Header["Date"]
	switch {
	case !bodyAllowed(resp.StatusCode):
		lc.writeResponseHead(resp, "")
		lc.endHead(hasDate, "", false, keep)
		_, err = io.CopyBuffer(io.Discard, resp.Body, *buf)
	case resp.ContentLength >= 0 && (resp.Header.Get("Content-Length") != "" || listed["Content-Length"] && resp.ContentLength <= netHTTPHeld):
		// An answer whose Connection names Content-Length loses the field, not the length its
		// framing gave: net/http sends it for an answer it holds whole (netHTTPHeld).
		length := ""
		if resp.Header.Get("Content-Length") == "" {
			length = strconv.FormatInt(resp.ContentLength, 10)
		}
		// net/http sniffs the first bytes it writes: up to 512 unless the body is shorter.
		var n int
		if _, ok := resp.Header["Content-Type"]; !ok && resp.ContentLength > 0 {
			n, err = io.ReadFull(resp.Body, (*buf)[:min(512, resp.ContentLength)])
		}
		lc.writeResponseHead(resp, sniff(resp, (*buf)[:n]))
		lc.endHead(hasDate, length, false, keep)
		_, _ = lc.bw.Write((*buf)[:n])
		var m int64
		if err == nil {
			m, err = io.CopyBuffer(writerOnly{lc.bw}, resp.Body, *buf)
		}
		if int64(n)+m < resp.ContentLength {
			keep = false
		}
	default:
		err = lc.relayUnsized(resp, *buf, keep, listed)
	}
	uc.bodyRead()
	if err != nil {
		// Closed before the body, whose Close reads what is left of it: the rest of an answer
		// the client stopped taking may never end. An answer that broke off ends the client's
		// connection too, the only way to tell it the answer is not complete.
		uc.abandon()
		keep = false
	}
	_ = resp.Body.Close()
	lc.midAnswer = false
	if ferr := lc.bw.Flush(); ferr != nil {
		keep = false
		err = ferr
	}
	if err != nil || resp.Close {
		_ = uc.c.Close()
	} else {
		pool.put(addr, uc)
	}
	return keep, err
}

// relayUnsized writes a body of unknown length chunked, flushing after every read so streams
// flow, and the trailers endTrailer leaves of those of an answer whose Connection names listed;
// an empty one without trailers is sent with Content-Length 0. A body that breaks off, or whose
// trailer section is too long, is not ended: the error is returned with what came of it written.
func (lc *leanConn) relayUnsized(resp *http.Response, buf []byte, keep bool, listed map[string]bool) error {
	wrote := false
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if !wrote {
				lc.writeResponseHead(resp, sniff(resp, buf[:n]))
				_, hasDate := resp.Header["Date"]
				lc.endHead(hasDate, "", true, keep)
				wrote = true
			}
			lc.scratch = strconv.AppendInt(lc.scratch[:0], int64(n), 16)
			lc.scratch = append(lc.scratch, "\r\n"...)
			_, _ = lc.bw.Write(lc.scratch)
			_, _ = lc.bw.Write(buf[:n])
			_, _ = lc.bw.WriteString("\r\n")
			if werr := lc.bw.Flush(); werr != nil {
				return werr
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := endTrailer(resp.Trailer, listed); err != nil {
		return err
	}
	_, hasDate := resp.Header["Date"]
	if !wrote {
		lc.writeResponseHead(resp, "")
		if len(resp.Trailer) == 0 {
			lc.endHead(hasDate, "0", false, keep)
			return nil
		}
		lc.endHead(hasDate, "", true, keep)
	}
	_, _ = lc.bw.WriteString("0\r\n")
	writeTrailer(lc.bw, resp.Trailer)
	return nil
}

// writeTrailer writes the trailer section t, which endTrailer checked, and the empty line that
// ends it. Its values came from net/textproto, which refuses CR, LF and NUL in them; a folded
// one may end in a space, trimmed as net/http's server trims it.
func writeTrailer(bw *bufio.Writer, t http.Header) {
	for k, vs := range t {
		for _, v := range vs {
			writeField(bw, k, textproto.TrimString(v))
		}
	}
	_, _ = bw.WriteString("\r\n")
}
