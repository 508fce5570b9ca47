package proxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
)

// An answer with both Transfer-Encoding and Content-Length (RFC 9112 §6.3) has two framings:
// net/http's ReadResponse drops the Content-Length and reads the body chunked, while the
// instance, or a header injected into its answer (response splitting), may have meant the
// length. What one framing leaves of the other on the connection would then be read as the
// answer to the next request sent on it, another client's. RFC 9112 says such an answer
// "ought to be handled as an error": as nginx does, the attempt fails with 502 on every path
// and its connection is closed. ReadResponse leaves no trace of the Content-Length, so
// framingWatch reads the fields of the answer's heads from the bytes as they arrive.

// errAmbiguousLength is the failure of an attempt answered with both Transfer-Encoding and
// Content-Length.
var errAmbiguousLength = errors.New("the answer has both Transfer-Encoding and Content-Length")

// framingWatch follows the heads of the answer to one request, interim ones (1xx but 101)
// included, and notes a final one with both Transfer-Encoding and Content-Length; it ignores
// what comes after the final head. An interim answer has no body, so neither framing applies
// to it: net/http reads none and ReverseProxy relays it.
type framingWatch struct {
	line            []byte // the start of the line being read, up to watchedLine bytes
	inStatus        bool   // the line is a head's status line
	interim         bool   // the current head is an interim answer's
	length, chunked bool   // the current head has Content-Length, Transfer-Encoding
	done            bool   // the final head ended
	ambiguous       bool   // the final head had both
}

// watchedLine is how much of a line framingWatch keeps: enough for a status line's code and
// the field names it looks for.
const watchedLine = 32

// expect makes w follow the answer to a new request, whose first byte is next.
func (w *framingWatch) expect() { *w = framingWatch{line: w.line[:0], inStatus: true} }

func (w *framingWatch) feed(p []byte) {
	for _, c := range p {
		if w.done {
			return
		}
		if c != '\n' {
			if len(w.line) < watchedLine {
				w.line = append(w.line, c)
			}
			continue
		}
		w.endLine()
	}
}

// endLine handles the line in w.line, whose LF just came.
func (w *framingWatch) endLine() {
	l := w.line
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	w.line = w.line[:0]
	switch {
	case w.inStatus:
		w.inStatus = false
		// "HTTP/1.1 1xx": an interim answer, after which another head comes, unless it is 101.
		w.interim = len(l) >= 12 && l[9] == '1' && !(l[10] == '0' && l[11] == '1')
	case len(l) == 0:
		if !w.interim {
			w.ambiguous = w.length && w.chunked
			w.done = true
			return
		}
		w.length, w.chunked, w.inStatus = false, false, true
	default:
		name := l
		if i := bytes.IndexByte(l, ':'); i >= 0 {
			name = l[:i]
		}
		w.length = w.length || fold(name, "Content-Length")
		w.chunked = w.chunked || fold(name, "Transfer-Encoding")
	}
}

// watchedConn is a connection of the ReverseProxy path's transport, whose answers' framing it
// watches: RoundTrip calls expect when the transport takes it for a request (no request is
// pipelined, so the answer's first byte is the next read) and ambiguous once the head is read.
// It also bounds the answer's heads, interim ones included, to maxResponseHead in all, as
// headLimit does on the fast path: the transport's own limit starts over after each interim
// answer its caller takes.
type watchedConn struct {
	net.Conn
	mu sync.Mutex
	w  framingWatch
	// heading is set from expect until the final head ended; left is what the heads may still
	// take.
	heading bool
	left    int64
	// stall, while an answer's body is read (stallBody), times each read by response_body.
	stall *stallTimer
}

func (c *watchedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	heading, left, stall := c.heading, c.left, c.stall
	c.mu.Unlock()
	if heading {
		if left <= 0 {
			return 0, errHeadTooLong
		}
		p = p[:min(int64(len(p)), left)]
	}
	if stall != nil {
		stall.begin()
	}
	n, err := c.Conn.Read(p)
	if stall != nil {
		err = stall.end(err)
	}
	c.mu.Lock()
	// A read under way when expect was called (the transport's wait on an idle connection)
	// counts too.
	if c.heading {
		c.left -= int64(n)
	}
	c.w.feed(p[:n])
	c.heading = c.heading && !c.w.done
	c.mu.Unlock()
	return n, err
}

// Close closes the connection, with a reset (resetClose) while the transport waits for an
// answer's head: it gave up (response_header ran out, or the client left).
func (c *watchedConn) Close() error {
	c.mu.Lock()
	heading := c.heading
	c.mu.Unlock()
	if heading {
		return resetClose(c.Conn)
	}
	return c.Conn.Close()
}

// CloseWrite lets ReverseProxy half-close an upgraded connection as it does a plain TCP one.
func (c *watchedConn) CloseWrite() error {
	return closeWrite(c.Conn)
}

func (c *watchedConn) expect() {
	c.mu.Lock()
	c.w.expect()
	c.heading, c.left = true, maxResponseHead
	c.mu.Unlock()
}

// timeReads has s time the connection's reads, from the head of an answer whose body s bounds.
func (c *watchedConn) timeReads(s *stallTimer) {
	c.mu.Lock()
	c.stall = s
	c.mu.Unlock()
}

// stopTiming ends s's timing of the connection's reads, unless the next answer's took over.
func (c *watchedConn) stopTiming(s *stallTimer) {
	c.mu.Lock()
	if c.stall == s {
		c.stall = nil
	}
	c.mu.Unlock()
}

func (c *watchedConn) ambiguous() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.ambiguous
}
