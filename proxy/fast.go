package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// The fast path proxies the requests without a body that net/http parsed (the front, front.go,
// serves plain GETs before them) over pooled HTTP/1.1 connections written and read by the
// handler's own goroutine: no request clone, no transport goroutines. Requests with a body or an
// upgrade take the httputil.ReverseProxy path instead, which can stream a body while the
// response arrives.

// maxIdlePerAddr caps the idle connections kept to one instance.
const maxIdlePerAddr = 1024

// maxResponseHead is the most the heads of an answer, interim ones and the final one together,
// may take, as http.Transport's MaxResponseHeaderBytes defaults to: more fails the attempt.
const maxResponseHead = 10 << 20

// errHeadTooLong is the failure of an attempt whose answer's heads are longer than
// maxResponseHead.
var errHeadTooLong = fmt.Errorf("the answer's head is longer than %d bytes", maxResponseHead)

// headLimit is what an upConn's reader reads the connection through: while a head is read,
// left counts down what it may still take, and watch follows the answer's framing; while the
// answer's body is read (body), stall, when set, bounds each read by response_body.
type headLimit struct {
	c     net.Conn
	left  int64
	watch framingWatch
	body  bool
	stall *stallTimer
	// client, while an answer's body is relayed to a lean path's client, is watched for its
	// leaving (leanConn.watch) from the moment a read has waited slowAnswer: net/http's
	// server cancels a request whose client left, and the lean path would otherwise wait on
	// an instance that sends nothing more, holding both connections. up is the connection
	// read.
	client *leanConn
	up     *upConn
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errHeadTooLong
	}
	p = p[:min(int64(len(p)), l.left)]
	var stall *stallTimer
	if l.body && l.stall != nil {
		stall = l.stall
		stall.begin()
	}
	var n int
	var err error
	if l.client == nil {
		n, err = l.c.Read(p)
	} else {
		_ = l.c.SetReadDeadline(time.Now().Add(slowAnswer))
		n, err = l.c.Read(p)
		_ = l.c.SetReadDeadline(time.Time{})
		if stall != nil {
			stall.recut() // the line above may have undone its cut
		}
		if n == 0 && isTimeout(err) {
			stop := l.client.watch(l.up)
			n, err = l.c.Read(p)
			stop()
		}
	}
	if stall != nil {
		err = stall.end(err)
	}
	l.left -= int64(n)
	l.watch.feed(p[:n])
	return n, err
}

// upConn is one connection to an instance or a secondary edge.
type upConn struct {
	c      net.Conn
	limit  *headLimit
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	idleAt time.Time
	// look tells, when uc is taken from the pool, whether it is still quiet.
	look socketLook
}

// connPool keeps idle connections per address, newest first out, for up to idle. Each read of
// an answer's body on its connections waits for up to body (response_body; 0: without bound).
type connPool struct {
	dial dialFunc
	idle time.Duration
	body time.Duration
	mu   sync.Mutex
	free map[string][]*upConn
}

// upstreamReadBuffer is the size of the buffer every path reads an instance's answers
// through, the fast paths' pool and the transport of the ReverseProxy path alike. net/http
// reads a trailer section only once a CRLFCRLF follows within that buffer, which a section
// ended by bare LFs need not hold: with buffers of two sizes, an answer complete as it came
// would reach the client on one path and be cut on another, by the bytes after it. A 4 KiB
// buffer on the lean path, the Transport's default, cost it a third more CPU on large answers.
const upstreamReadBuffer = 8 << 10

// abandon closes uc's connection before its exchange ended (no answer in time, a client that
// left, an answer broken off or not relayed) with a reset (resetClose).
func (uc *upConn) abandon() {
	_ = resetClose(uc.c)
}

// resetClose closes c, an upstream connection given up on before its answer ended, with a reset
// rather than a FIN where c is a TCP connection: a peer edge takes a FIN before its answer for a
// client's half-close and would keep its own request to its instance until its response_header
// ran out; a reset has it cancel that request at once.
func resetClose(c net.Conn) error {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.Close()
}

func newConnPool(dial dialFunc, idle, body time.Duration) *connPool {
	return &connPool{dial: dial, idle: idle, body: body, free: map[string][]*upConn{}}
}

// get returns an idle connection to addr that is still quiet (nothing arrived on it since its
// last answer, not even its end), or a new one.
func (p *connPool) get(ctx context.Context, addr string) (*upConn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		list := p.free[addr]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		uc := list[len(list)-1]
		p.free[addr] = list[:len(list)-1]
		p.mu.Unlock()
		if now.Sub(uc.idleAt) < p.idle && uc.look.quiet(uc.c) {
			uc.reused = true
			return uc, nil
		}
		_ = uc.c.Close()
	}
	c, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	limit := &headLimit{c: c, left: math.MaxInt64}
	if p.body > 0 {
		limit.stall = &stallTimer{d: p.body, c: c}
	}
	uc := &upConn{c: c, limit: limit, br: bufio.NewReaderSize(limit, upstreamReadBuffer), bw: bufio.NewWriterSize(c, 4<<10)}
	limit.up = uc
	return uc, nil
}

// put keeps uc for the next request to addr when nothing is left buffered on it; otherwise the
// instance sent more than its answer, and uc is closed.
func (p *connPool) put(addr string, uc *upConn) {
	if uc.br.Buffered() > 0 {
		_ = uc.c.Close()
		return
	}
	uc.idleAt = time.Now()
	p.mu.Lock()
	if len(p.free[addr]) < maxIdlePerAddr {
		p.free[addr] = append(p.free[addr], uc)
		uc = nil
	}
	p.mu.Unlock()
	if uc != nil {
		_ = uc.c.Close()
	}
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, list := range p.free {
		for _, uc := range list {
			_ = uc.c.Close()
		}
		delete(p.free, addr)
	}
}

// errIdleClosed means an idle connection turned out closed by the instance before it answered.
var errIdleClosed = errors.New("idle connection closed by the instance")

// exchange sends the request head that head writes to addr and reads the final response head
// to a request with r's method within the response_header timeout rh, passing the interim
// answers before it to interim.
func (p *connPool) exchange(ctx context.Context, addr string, head func(*bufio.Writer), r *http.Request, rh time.Duration, replay bool, interim func(int, http.Header)) (*http.Response, *upConn, error) {
	uc, err := p.send(ctx, addr, head, rh, replay, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := uc.readFinal(ctx, r, interim)
	_ = uc.c.SetReadDeadline(time.Time{})
	if err == nil {
		err = ctx.Err() // a cancellation whose deadline the line above undid
	}
	if err != nil {
		uc.abandon()
		return nil, nil, headerTimeout(err)
	}
	return resp, uc, nil
}

// send sends the request head that head writes to addr and waits for the first byte of the
// answer, for up to rh; the connection's read deadline stays set for the rest of the head. When
// replay is set (the method is retriable), a reused connection the instance had closed is
// replaced by a new one once; otherwise the error is returned, as the instance may have
// processed the request. slow, when set, is called with the connection when the answer is
// slower than slowAnswer, and the function it returns when the wait ends.
func (p *connPool) send(ctx context.Context, addr string, head func(*bufio.Writer), rh time.Duration, replay bool, slow func(*upConn) func()) (*upConn, error) {
	for {
		uc, err := p.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		err = uc.send(ctx, head, rh, slow)
		if err == nil {
			return uc, nil
		}
		uc.abandon()
		if !replay || !uc.reused || !errors.Is(err, errIdleClosed) || ctx.Err() != nil {
			return nil, err
		}
	}
}

// afterCancel makes the connection's reads and writes fail once ctx ends; stop undoes it.
func (uc *upConn) afterCancel(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(ctx, func() { _ = uc.c.SetDeadline(time.Unix(1, 0)) })
}

// slowAnswer is how long an answer's first byte may take before send calls its slow hook.
const slowAnswer = 50 * time.Millisecond

func (uc *upConn) send(ctx context.Context, head func(*bufio.Writer), rh time.Duration, slow func(*upConn) func()) error {
	defer uc.afterCancel(ctx)()
	start := time.Now()
	var deadline time.Time
	if rh > 0 {
		deadline = start.Add(rh)
	}
	watch := slow != nil && (rh <= 0 || rh > slowAnswer)
	first := deadline
	if watch {
		first = start.Add(slowAnswer)
	}
	// The deadline is set before the request leaves and ctx checked after, so a cancellation
	// (whose deadline in the past afterCancel sets) is never overridden. The answer's heads,
	// interim ones included, may take maxResponseHead, counted from what came after the last
	// answer (nothing, as it is pooled only then); headRead lifts the limit.
	_ = uc.c.SetReadDeadline(first)
	uc.limit.left, uc.limit.body = maxResponseHead, false
	uc.limit.watch.expect()
	if err := ctx.Err(); err != nil {
		return err
	}
	head(uc.bw)
	if err := uc.bw.Flush(); err != nil {
		if uc.reused && closedByPeer(err) {
			return errIdleClosed
		}
		return fmt.Errorf("send request: %w", err)
	}
	_, err := uc.br.Peek(1)
	if watch && (err == nil || isTimeout(err)) {
		// The rest of the head, or all of it when it is slow, has up to rh: the first byte may
		// start an interim answer (103 Early Hints) sent long before the final one.
		_ = uc.c.SetReadDeadline(deadline)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if watch && err != nil && isTimeout(err) {
		stop := slow(uc)
		_, err = uc.br.Peek(1)
		stop()
	}
	if err != nil {
		if uc.reused && closedByPeer(err) {
			return errIdleClosed
		}
		return fmt.Errorf("read response: %w", headerTimeout(err))
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errUnaskedSwitch is the failure of an attempt answered 101 Switching Protocols to a request
// that asked for no upgrade, as the fast paths' requests never do: what follows the 101 is not
// an answer, so the connection is closed and the client answered 502, as ReverseProxy does.
var errUnaskedSwitch = errors.New("the instance switched protocols (101) though no upgrade was requested")

// checkStatus fails an attempt answered with a status under 100, which net/http's ReadResponse
// takes though a status is 100 to 599 (RFC 9110 §15): net/http's ResponseWriter panics writing
// it, and the lean path would write a status line no client reads.
func checkStatus(code int) error {
	if code < 100 {
		return fmt.Errorf("malformed status %03d", code)
	}
	return nil
}

// readFinal reads the head of the final response to a request with r's method, which asks for
// no upgrade, passing the interim ones (103 Early Hints) to interim, all of them and the final
// one within maxResponseHead (see interim.go); a 101 is final, and an error, and so is a head
// with both Transfer-Encoding and Content-Length (errAmbiguousLength).
func (uc *upConn) readFinal(ctx context.Context, r *http.Request, interim func(int, http.Header)) (*http.Response, error) {
	defer uc.afterCancel(ctx)()
	for {
		resp, err := http.ReadResponse(uc.br, r)
		if err == nil {
			err = checkStatus(resp.StatusCode)
		}
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errUnaskedSwitch
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			interim(resp.StatusCode, resp.Header)
			continue
		}
		if uc.limit.watch.ambiguous {
			return nil, errAmbiguousLength
		}
		uc.headRead()
		return resp, nil
	}
}

// headRead lifts the limit on what the connection's reads take, once the answer's head is read,
// and bounds each read of its body by response_body.
func (uc *upConn) headRead() {
	uc.limit.left, uc.limit.body = math.MaxInt64, true
	if uc.limit.stall != nil {
		uc.limit.stall.reset()
	}
}

// bodyRead ends what headRead began, once the answer's body is relayed: the client is no longer
// watched (see headLimit), and the response_body timer is stopped, which, left pending, would
// hold the connection, closed or idle, until it fired.
func (uc *upConn) bodyRead() {
	uc.limit.client = nil
	if uc.limit.stall != nil {
		uc.limit.stall.stop()
	}
}

// closedByPeer reports whether err means the other side had closed the connection.
func closedByPeer(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	for _, e := range resetErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// writeHead writes the request head sent upstream to addr: the fields upstreamHeader keeps, and
// the framing of the body forwarded, which is none: Content-Length 0 for the methods that carry
// a body, as net/http's Transport writes it. A request without a Host (an HTTP/1.0 one, or one
// whose Host is empty) names addr in its place, as net/http's Transport does on the
// ReverseProxy path. Header values came from a parsed request or from the edge, so they hold no
// line breaks; field order does not matter.
func writeHead(bw *bufio.Writer, r *http.Request, addr string, f *forwarding, hop string, underscores bool) {
	host := r.Host
	if host == "" {
		host = addr
	}
	_, _ = bw.WriteString(r.Method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(r.URL.RequestURI())
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(host)
	_, _ = bw.WriteString("\r\n")
	for k, vs := range upstreamHeader(r.Header, f, hop, underscores) {
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		writeField(bw, "Content-Length", "0")
	}
	_, _ = bw.WriteString("\r\n")
}

func writeField(bw *bufio.Writer, k, v string) {
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(v)
	_, _ = bw.WriteString("\r\n")
}

// serveFast proxies a request without a body to the targets of its plan as the policy says.
func (a *app) serveFast(w http.ResponseWriter, r *http.Request) {
	rt := a.route.Load()
	forwarded := a.forwardedBy(r)
	back := forwarded != "" || a.cameBack(r.Header.Values(HeaderForwardedBy))
	plan := a.plan(rt, back)
	if len(plan) == 0 {
		if back && !rt.Available {
			a.fail(w, r, errLoop)
		} else {
			a.fail(w, r, errNoTarget)
		}
		return
	}
	f := a.forwardingOf(r)
	ctx := r.Context()
	retriable := rt.retry[r.Method]
	rh := a.pol.timeouts.ResponseHeader.D()
	var broke, relayed bool
	err := a.forward(func() bool { return ctx.Err() != nil }, rt, plan, retriable, func() bool { return !relayed }, func(at *attempt) error {
		t := at.t
		pool, hop := a.pool, forwarded
		if t.Secondary {
			pool, hop = a.peerPool, a.peerHop(r.Header.Values(HeaderForwardedBy))
		}
		resp, uc, err := pool.exchange(ctx, t.Addr, func(bw *bufio.Writer) { writeHead(bw, r, t.Addr, &f, hop, a.pol.underscores) }, r, rh, retriable,
			func(code int, h http.Header) {
				relayInterim(w, r, code, h)
				relayed = relayed || r.ProtoAtLeast(1, 1)
			})
		if err != nil {
			return err
		}
		a.answered(at, resp.StatusCode)
		if a.retryAnswer(at, resp.StatusCode, !relayed) {
			uc.abandon()
			return &statusError{resp.StatusCode}
		}
		// A client that leaves while the body is relayed ends the relay's reads too.
		err = a.relay(w, r, resp, uc, pool, t.Addr, uc.afterCancel(ctx))
		a.noteBodyTimeout(t, err)
		broke = err != nil
		return nil
	})
	if broke {
		// As ReverseProxy does: net/http then ends the connection (or the HTTP/2 stream) without
		// ending the answer, which would tell the client it is complete.
		panic(http.ErrAbortHandler)
	}
	if err == nil {
		return
	}
	if back && !rt.Available {
		err = fmt.Errorf("%w (last error: %w)", errLoop, err)
	}
	a.fail(w, r, err)
}

// relay writes resp to the client and returns the connection to the pool when the body was
// read to its end and the instance keeps the connection open. stop ends the cancellation of
// uc's reads that the client's leaving causes, and reports false when it happened already. The
// error is the body's that broke off, read or written.
func (a *app) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, uc *upConn, pool *connPool, addr string, stop func() bool) error {
	listed := removeHop(resp.Header)
	dropTrailers(resp.Trailer, listed)
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	for k := range resp.Trailer {
		dst.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	buf := buffers.Get().(*[]byte)
	var err error
	if resp.ContentLength == -1 {
		err = copyFlushing(w, resp.Body, *buf)
	} else {
		// Hide w's ReadFrom: it would flush the head on its own and copy through a fresh buffer;
		// written through the response's buffer, a small answer leaves in one write.
		_, err = io.CopyBuffer(writerOnly{w}, resp.Body, *buf)
	}
	buffers.Put(buf)
	if err == nil {
		err = endTrailer(resp.Trailer, listed)
	}
	if err == nil && len(resp.Trailer) > 0 {
		// As ReverseProxy does: an empty body not yet flushed would be sent with Content-Length
		// 0, and its trailers nobody announced dropped.
		_ = http.NewResponseController(w).Flush()
	}
	if err != nil {
		// Closed before the body, whose Close reads what is left of it: the rest of an answer
		// the client stopped taking may never end.
		uc.abandon()
	}
	_ = resp.Body.Close()
	uc.bodyRead()
	for k, v := range resp.Trailer {
		dst[http.TrailerPrefix+k] = v
	}
	if !stop() || err != nil || resp.Close || r.Context().Err() != nil {
		_ = uc.c.Close()
		return err
	}
	pool.put(addr, uc)
	return nil
}

// copyFlushing copies a body of unknown length, flushing after every read so streams flow.
func copyFlushing(w http.ResponseWriter, src io.Reader, buf []byte) error {
	rc := http.NewResponseController(w)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// writerOnly exposes only Write, so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }
