package proxy

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// net/http's server accepts two request framings that RFC 9112 tells a proxy to refuse, because
// a server behind it may read them differently (request smuggling): a request with both
// Content-Length and Transfer-Encoding (§6.3: net/http drops Content-Length and reads the body
// chunked) and a field folded over several lines (§5.2, obs-fold: net/http joins the lines).
// guardedConn watches the byte stream net/http reads from a client's connection, request by
// request, and replaces such a head by one that net/http itself answers 400 and closes the
// connection after. net/http refuses the rest of what RFC 9112 §6 forbids by itself: differing
// Content-Length fields (400), a Transfer-Encoding other than a final chunked (501), a bare CR
// in a field (400), a head over MaxHeaderBytes (431).
//
// After an Upgrade request without a body (the edge forwards the upgrade of no other) the bytes
// may belong to another protocol, or still be HTTP/1.1 when the answer does not switch
// protocols (101). guardedConn holds them back until it sees the
// answer's status line as net/http writes it: after a switch they pass unchecked, after any
// other answer nothing more is read and net/http closes the connection. (A request pipelined
// ahead of the Upgrade in the same read is answered first, so such an Upgrade is refused too.)
// A CONNECT request is checked as any other, and so are the bytes after it: ReverseProxy
// relays its answer, 2xx included, as an ordinary one, and net/http goes on reading HTTP/1.1.

// refusedHead is a head net/http answers 400 Bad Request and closes the connection after.
const refusedHead = "GET / HTTP/1.1\r\nHost: refused\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"

// unsupportedHead is a head net/http answers 505 HTTP Version Not Supported and closes the
// connection after, as it answers every request line of HTTP/2.0 but "PRI *".
const unsupportedHead = "GET / HTTP/2.0\r\n\r\n"

// Where guardedConn is in the stream.
const (
	inHead = iota
	inBody
	inChunkSize
	inChunkData
	inTrailers
	passThrough // a switched protocol, HTTP/2 or a head too long to check: net/http sees the bytes as they are
	refused     // a refused head was handed on: nothing more is passed on
)

// guardedConn is a client's connection handed to net/http, whose first bytes were already read
// into r by the front.
type guardedConn struct {
	net.Conn
	r     *bufio.Reader
	max   int // the longest head checked; a longer one is net/http's to refuse (431)
	state int
	left  int64  // bytes left of the body or chunk (with its CRLF)
	line  []byte // the head or chunk line being gathered
	out   []byte // bytes checked and not yet read by net/http
	buf   [4 << 10]byte
	// switching is what an Upgrade request awaits from its answer (switchNone when none does);
	// net/http writes the answer while it may be reading, hence the atomic.
	switching atomic.Int32
	// held are the bytes after an Upgrade request, until its answer: one read of them.
	held []byte
	// tunnels tracks the connection once net/http handed it over to a handler (hijacked).
	tunnels *tunnels
	// awaiting is set while an HTTP/1 request whose last byte was read (set then, as net/http
	// starts its background read before it calls the edge's handler) has no answer byte
	// written; a client's half-close found then is not its leaving (see Read), nor
	// is one found later that was there when the first byte was (halfClosed, see Write).
	awaiting, halfClosed atomic.Bool
	// A pipelined request, read with the one before it, awaits its answer too once the handler
	// of that one returned (serving unset): read counts the requests whose last byte was read
	// but OPTIONS * (global), which net/http serves without the handler, and served those whose
	// handler began.
	read, served atomic.Int64
	serving      atomic.Bool
	global       bool
	// look is the look at the first write of an answer (see Write).
	look socketLook
	// deadline is the read deadline net/http and the edge set, which a read held at the
	// client's half-close waits for.
	deadline readDeadline
	// headBy, in Unix nanoseconds, is when the head the front began to read must have come
	// (client_header, counted from the connection's start or the head's first byte): until
	// the guard has seen that head, no read deadline net/http sets goes past it, or a client
	// that sent its head slowly would have client_header again from the handover. 0: none.
	headBy atomic.Int64
	// h2c is set when the connection goes to a server that serves HTTP/2 with prior
	// knowledge, which it does when the preface opens the connection; started once a head
	// was seen.
	h2c, started bool
	// crlf is set while the trailer lines so far end in CRLF (none yet counts); past once
	// net/http reads past the end of the last request the guard saw, as it does after a
	// trailer that does not end in CRLF CRLF (it looks for one further on), until the next head
	// or until the blank lines after the trailer, which it is handed at once then (see blank),
	// give it that CRLF CRLF: it then ends the trailer where the guard did.
	crlf, past bool
	// tail holds the last four bytes of the trailer and of the blank lines after it.
	tail uint32
	// endPast is set when net/http, reading past such a trailer, found the client's end: the
	// body, whole as the client sent it, is one net/http cannot read to its end (see
	// endedPastBody). Unset at the next head.
	endPast atomic.Bool
}

// What an Upgrade request awaits; then whether its answer switched protocols.
const (
	switchNone = iota
	switchUpgrade
	switchDone
	switchRefused
)

// Write watches the status line of the answer to an Upgrade head: unless it switches protocols,
// the bytes after that head are unchecked, so nothing more is read. The first write of an
// answer looks, without waiting, for the client's end: there already, it is a half-close that
// net/http's background read, which may not have run yet, would find only once the answer began
// and take for the client's leaving.
func (g *guardedConn) Write(p []byte) (int, error) {
	if g.awaiting.Load() {
		// halfClosed first: a read finding the end between the two takes it for a half-close.
		if g.look.ended(g.Conn) {
			g.halfClosed.Store(true)
		}
		g.awaiting.Store(false)
	}
	if g.switching.Load() == switchUpgrade && len(p) >= 12 && bytes.HasPrefix(p, []byte("HTTP/1.")) {
		switch code := string(p[9:12]); {
		case code == "101":
			g.switching.Store(switchDone)
		case code[0] == '1': // an interim answer: the final one decides
		default:
			g.switching.Store(switchRefused)
		}
	}
	return g.Conn.Write(p)
}

func (g *guardedConn) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		switch g.switching.Load() {
		case switchRefused:
			return 0, net.ErrClosed
		case switchDone:
			g.switching.Store(switchNone)
			g.state, g.out, g.held = passThrough, g.held, nil
			continue
		case switchUpgrade:
			if len(g.held) > 0 {
				// net/http's background read, which watches for the client's leaving while
				// the request is served, is the only read until the answer: as it does at a
				// pipelined byte, it stops watching, and the rest of what the client sends
				// waits on the connection. Held without bound, a client could have the edge
				// buffer all it sends until the answer, up to response_header later.
				return 0, nil
			}
		}
		switch g.state {
		case passThrough:
			return g.r.Read(p)
		case refused:
			// net/http answers the refused head 400 and closes the connection. Until then, a
			// read (net/http's background read while it serves the request before) waits as on
			// a quiet connection: an error here would cancel that request as if the client had
			// left. What the client sends meanwhile is dropped.
			// So does one that finds the client's half-close while a request before awaits
			// its answer, as in any other state.
			if _, err := g.r.Read(g.buf[:]); err != nil {
				if err == io.EOF && g.awaits() && len(p) == 1 {
					return 0, g.deadline.wait(g.Conn)
				}
				return 0, err
			}
			continue
		}
		n, err := g.r.Read(g.buf[:])
		g.feed(g.buf[:n])
		if err != nil && len(g.out) == 0 {
			if len(g.line) > 0 && g.state != refused {
				// The stream ended inside a head or chunk line: let net/http see what came.
				g.out, g.line = g.line, nil
				continue
			}
			if err == io.EOF && g.state == inHead && len(g.line) == 0 && g.past {
				g.endPast.Store(true)
			}
			if err == io.EOF && g.state == inHead && len(g.line) == 0 && g.awaits() && len(p) == 1 && !g.past {
				// The client half-closed its connection after a complete request, before any
				// of its answer: it will send nothing more, and may still read (nc -N, an
				// HTTP/1.0 script, a monitoring check). net/http's background read, which
				// watches for the client's leaving while the request is served, would take
				// the end for it and cancel the request: the read waits instead, as on a
				// quiet connection, until net/http ends it (its deadline in the past) once
				// the answer is written. net/http's next read finds the end and closes the
				// connection. The background read asks for one byte; net/http's own reads
				// fill its buffer, and one that finds the end reads past what the guard
				// took for a whole request (a chunked body's trailer ending in a bare LF,
				// which net/http reads on): it gets the end at once, where held it waited
				// out client_body, the instance's connection held as long. So did one read of
				// one byte (past), with one byte of room left in net/http's buffer.
				return 0, g.deadline.wait(g.Conn)
			}
			return 0, err
		}
	}
	n := copy(p, g.out)
	if n == len(g.out) {
		// Emptied, the buffer takes the next bytes from its start: advanced past its end, it
		// would have no room left, and every read of a body would allocate another.
		g.out = g.out[:0]
	} else {
		g.out = g.out[n:]
	}
	return n, nil
}

// Close stops tracking a connection handed over, as its handler is done with it.
func (g *guardedConn) Close() error {
	if g.tunnels != nil {
		g.tunnels.remove(g)
	}
	return g.Conn.Close()
}

func (g *guardedConn) SetReadDeadline(t time.Time) error {
	if by := g.headBy.Load(); by != 0 && (t.IsZero() || t.UnixNano() > by) {
		t = time.Unix(0, by)
	}
	g.deadline.set(t)
	return g.Conn.SetReadDeadline(t)
}

func (g *guardedConn) SetDeadline(t time.Time) error {
	g.deadline.set(t)
	return g.Conn.SetDeadline(t)
}

// readDeadline follows a connection's read deadline for a read that does not reach the
// connection (guardedConn's, held at a half-close).
type readDeadline struct {
	mu    sync.Mutex
	at    time.Time
	moved chan struct{} // closed when at is set, if a read waits
}

func (d *readDeadline) set(t time.Time) {
	d.mu.Lock()
	d.at = t
	if d.moved != nil {
		close(d.moved)
		d.moved = nil
	}
	d.mu.Unlock()
}

// wait returns once the deadline passed, with the error a read that waited for it returns, or
// once the client reset c (errClientReset; see resetWhileHalfClosed), whose read deadline is
// d's. It returns once the watch for the reset ended, as c's deadline ends it: a watch left
// behind could hold c's reads from the next read of net/http.
func (d *readDeadline) wait(c net.Conn) error {
	stop, watched := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-watched
	}()
	reset := make(chan struct{})
	go func() {
		defer close(watched)
		if resetWhileHalfClosed(c, stop) {
			close(reset)
		}
	}()
	for {
		d.mu.Lock()
		at := d.at
		if d.moved == nil {
			d.moved = make(chan struct{})
		}
		moved := d.moved
		d.mu.Unlock()
		if at.IsZero() {
			select {
			case <-moved:
			case <-reset:
				return errClientReset
			}
			continue
		}
		left := time.Until(at)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(left)
		select {
		case <-moved:
			t.Stop()
		case <-t.C:
			return os.ErrDeadlineExceeded
		case <-reset:
			t.Stop()
			return errClientReset
		}
	}
}

// CloseWrite lets net/http half-close the connection as it does a plain TCP one.
func (g *guardedConn) CloseWrite() error {
	return closeWrite(g.Conn)
}

// netHTTPBuffer is the size of the buffer net/http's server reads a connection through: it
// refuses a chunk line or trailers longer than that.
const netHTTPBuffer = 4 << 10

// tooLong returns what net/http gets in place of a head longer than g.max: a line longer than
// its limit on a head, max(g.max, netHTTPBuffer+1), by more than the buffer of it net/http may
// have read ahead, which the limit does not count.
func (g *guardedConn) tooLong() []byte {
	return bytes.Repeat([]byte("a"), max(g.max, netHTTPBuffer+1)+netHTTPBuffer+1)
}

// takeLine moves b up to and including its first newline into g.line and returns the rest, and
// whether a line ended. A head longer than g.max is answered 431: net/http gets in its place
// bytes over its own limit, which is at least netHTTPBuffer over MaxHeaderBytes and so over a
// small g.max. A chunk line or trailers longer than net/http reads pass through untouched, with
// all that follows, for net/http to refuse. No line is reported ended then.
func (g *guardedConn) takeLine(b []byte) (rest []byte, ended bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		g.line, rest = append(g.line, b...), nil
	} else {
		g.line, rest = append(g.line, b[:i+1]...), b[i+1:]
	}
	switch {
	case g.state == inHead && len(g.line) > g.max:
		g.state, g.out, g.line = refused, append(g.out, g.tooLong()...), nil
		return nil, false
	case g.state != inHead && len(g.line) > max(g.max, netHTTPBuffer):
		g.state, g.out, g.line = passThrough, append(g.out, g.line...), nil
		return rest, false
	}
	return rest, i >= 0
}

// feed moves b through the state machine into g.out.
func (g *guardedConn) feed(b []byte) {
	for len(b) > 0 {
		switch g.state {
		case passThrough:
			g.out = append(g.out, b...)
			return
		case refused:
			return
		case inBody, inChunkData:
			n := int(min(int64(len(b)), g.left))
			g.out = append(g.out, b[:n]...)
			b = b[n:]
			if g.left -= int64(n); g.left == 0 {
				if g.state == inBody {
					g.state = inHead
					g.requestRead()
				} else {
					g.state = inChunkSize
				}
			}
		case inHead:
			if g.switching.Load() == switchUpgrade {
				g.held = append(g.held, b...)
				return
			}
			var ended bool
			if b, ended = g.takeLine(b); ended && headComplete(g.line) {
				g.head()
			} else if ended && g.past && len(bytes.TrimLeft(g.line, "\r\n")) == 0 {
				g.blank()
			}
		case inChunkSize, inTrailers:
			var ended bool
			if b, ended = g.takeLine(b); ended {
				g.chunkLine()
			}
		}
	}
}

// headComplete reports whether the head in b ends with its empty line; blank lines before a
// request line (RFC 9112 §2.2) do not end it.
func headComplete(b []byte) bool {
	t := bytes.TrimLeft(b, "\r\n")
	return len(t) > 0 && (bytes.HasSuffix(t, []byte("\n\n")) || bytes.HasSuffix(t, []byte("\n\r\n")))
}

// head checks the complete head in g.line and hands it on, or a refused one in its place.
func (g *guardedConn) head() {
	h := g.line
	g.line, g.past = nil, false
	g.endPast.Store(false)
	g.headBy.Store(0)
	lines := bytes.Split(bytes.TrimLeft(h, "\r\n"), []byte("\n"))
	requestLine := bytes.TrimSuffix(lines[0], []byte("\r"))
	// The request line cut as net/http cuts it: "G/ HTTP/1.1" has no target, and net/http
	// serves every HTTP/1 minor version, HTTP/1.2 as HTTP/1.1.
	method, rest, ok1 := bytes.Cut(requestLine, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	http1 := len(proto) == len("HTTP/1.x") && bytes.HasPrefix(proto, []byte("HTTP/1.")) && '0' <= proto[7] && proto[7] <= '9'
	http11 := http1 && proto[7] >= '1'
	var lengths [][]byte
	chunked, te, upgrade, folded, fields := false, false, false, false, false
	for _, l := range lines[1:] {
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			break
		}
		fields = true
		if l[0] == ' ' || l[0] == '\t' {
			folded = true
			continue
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		value = bytes.Trim(value, " \t")
		switch {
		case fold(name, "Content-Length"):
			lengths = append(lengths, value)
		case fold(name, "Transfer-Encoding"):
			te = true
			chunked = bytes.HasSuffix(bytes.ToLower(value), []byte("chunked"))
		case fold(name, "Upgrade"):
			upgrade = true
		}
	}
	// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing (net/http
	// ignores it and reads no body).
	if folded || te && len(lengths) > 0 || te && !http11 {
		g.out = append(g.out, refusedHead...)
		g.state = refused
		return
	}
	first := !g.started
	g.started = true
	if string(requestLine) == "PRI * HTTP/2.0" {
		if fields || !first || !g.h2c {
			// Not the HTTP/2 preface that opens a connection (RFC 9113 §3.3), nor a request of
			// HTTP/1.x: net/http would serve it to the handler as an HTTP/2.0 request (for a
			// handler that switches to HTTP/2 itself), which the edge would forward as
			// "PRI * HTTP/1.1", body included. It is answered 505, as net/http answers any
			// other request line of HTTP/2.0 and nginx every one.
			g.out = append(g.out, unsupportedHead...)
			g.state = refused
			return
		}
		// The HTTP/2 preface, which net/http serves as HTTP/2.
		g.out = append(g.out, h...)
		g.state = passThrough
		return
	}
	g.out = append(g.out, h...)
	switch {
	case te && chunked:
		g.state = inChunkSize
	case len(lengths) > 0:
		n, err := strconv.ParseInt(string(lengths[0]), 10, 64)
		if err != nil || n < 0 {
			g.state = passThrough // net/http refuses it and closes the connection
		} else if n > 0 {
			g.state, g.left = inBody, n
		}
	case te:
		g.state = passThrough // net/http answers 501 and closes the connection
	}
	// The upgrade of a request with a body is not forwarded (see rewrite): its answer never
	// switches, and what follows the body is HTTP/1.1, checked as after any other request.
	if upgrade && g.state == inHead {
		g.switching.Store(switchUpgrade)
	}
	// net/http answers OPTIONS * itself, with no handler to count it served.
	g.global = bytes.HasPrefix(requestLine, []byte("OPTIONS * "))
	// A request line with no method or no target (" HTTP/1.1") net/http answers 400 itself,
	// with no handler: no answer is awaited, and a half-close after it is passed on. Held, it
	// kept net/http's look for the HTTP/2 preface, 14 bytes, from ever ending, and the client
	// from its 400 until client_header ran out.
	if g.state == inHead && ok1 && ok2 && len(method) > 0 && len(target) > 0 && http1 {
		g.requestRead()
	}
}

// awaits reports whether a request read has none of its answer written, or its client had
// half-closed the connection before the first byte of it was (see Read).
func (g *guardedConn) awaits() bool {
	return g.awaiting.Load() || g.halfClosed.Load() || !g.serving.Load() && g.read.Load() > g.served.Load()
}

// requestRead marks the request whose last byte was just read as awaiting its answer (see
// Read): net/http starts its background read, which may find the client's half-close at once,
// before it calls the edge's handler, which marks it too. A guard that reads no connection (its
// tests) serves no handler, and passes the end on.
func (g *guardedConn) requestRead() {
	if g.Conn != nil {
		if !g.global {
			g.read.Add(1)
		}
		g.awaiting.Store(true)
	}
}

// chunkLine handles a complete chunk-size or trailer line in g.line.
func (g *guardedConn) chunkLine() {
	l := g.line
	g.line = nil
	g.out = append(g.out, l...)
	t := bytes.TrimRight(l, "\r\n")
	if g.state == inTrailers {
		g.follow(l)
		if len(t) == 0 {
			g.state, g.past = inHead, !g.crlf || string(l) != "\r\n"
			g.requestRead()
		}
		g.crlf = bytes.HasSuffix(l, []byte("\r\n"))
		return
	}
	size, _, _ := bytes.Cut(t, []byte(";"))
	n, err := strconv.ParseInt(string(bytes.TrimRight(size, " \t")), 16, 64)
	switch {
	case err != nil || n < 0:
		g.state = passThrough // net/http refuses the body and closes the connection
	case n == 0:
		g.state, g.crlf, g.tail = inTrailers, true, 0
	case n > math.MaxInt64-2:
		// A chunk that no connection carries to its end, and whose length with its CRLF
		// overflows g.left.
		g.state = passThrough
	default:
		g.state, g.left = inChunkData, n+2
	}
}

// blank hands on the blank line in g.line, which net/http, reading past a trailer for CRLF CRLF,
// reads as it comes (RFC 9112 §2.2 lets blank lines precede a request line, and net/http skips
// them after a POST): held until a head or the client's end, a CRLF CRLF among them left the
// body unread until client_body ran out, where ReverseProxy answers at once, and at the client's
// half-close the request, whose body the instance got whole, was answered 400 (endPast).
func (g *guardedConn) blank() {
	g.follow(g.line)
	g.out, g.line = append(g.out, g.line...), nil
}

// follow adds b to g.tail and clears g.past once the bytes since the trailer's start end in
// CRLF CRLF, where net/http then ends the trailer: at its first blank line, as the guard did.
func (g *guardedConn) follow(b []byte) {
	for _, c := range b {
		if g.tail = g.tail<<8 | uint32(c); g.tail == 0x0d0a0d0a {
			g.past = false
		}
	}
}
