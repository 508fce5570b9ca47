package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The fast path proxies the requests without a body that net/http parsed (the front, front.go,
// serves plain GETs before them) over pooled HTTP/1.1 connections written and read by the
// handler's own goroutine: no request clone, no transport goroutines. Requests with a body or an
// upgrade take the httputil.ReverseProxy path instead, which can stream a body while the
// response arrives.

// maxIdlePerAddr caps the idle connections kept to one instance; idleTimeout drops older ones.
const (
	maxIdlePerAddr = 1024
	idleTimeout    = 90 * time.Second
)

// upConn is one connection to an instance or a secondary edge.
type upConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	idleAt time.Time
}

// connPool keeps idle connections per address, newest first out.
type connPool struct {
	dial dialFunc
	mu   sync.Mutex
	idle map[string][]*upConn
}

func newConnPool(dial dialFunc) *connPool {
	return &connPool{dial: dial, idle: map[string][]*upConn{}}
}

func (p *connPool) get(ctx context.Context, addr string) (*upConn, error) {
	now := time.Now()
	p.mu.Lock()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		uc := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if now.Sub(uc.idleAt) < idleTimeout {
			p.mu.Unlock()
			uc.reused = true
			return uc, nil
		}
		_ = uc.c.Close()
	}
	p.mu.Unlock()
	c, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 8<<10), bw: bufio.NewWriterSize(c, 4<<10)}, nil
}

func (p *connPool) put(addr string, uc *upConn) {
	uc.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle[addr]) < maxIdlePerAddr {
		p.idle[addr] = append(p.idle[addr], uc)
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
	for addr, list := range p.idle {
		for _, uc := range list {
			_ = uc.c.Close()
		}
		delete(p.idle, addr)
	}
}

// errIdleClosed means an idle connection turned out closed by the instance before it answered.
var errIdleClosed = errors.New("idle connection closed by the instance")

// exchange sends the request head that head writes to addr and reads the final response head
// to a request with r's method.
func (p *connPool) exchange(ctx context.Context, addr string, head func(*bufio.Writer), r *http.Request) (*http.Response, *upConn, error) {
	uc, err := p.send(ctx, addr, head)
	if err != nil {
		return nil, nil, err
	}
	resp, err := uc.readFinal(ctx, r)
	if err != nil {
		_ = uc.c.Close()
		return nil, nil, err
	}
	return resp, uc, nil
}

// send sends the request head that head writes to addr and waits for the first byte of the
// answer. A reused connection the instance had closed is replaced by a new one once, as
// nothing was processed.
func (p *connPool) send(ctx context.Context, addr string, head func(*bufio.Writer)) (*upConn, error) {
	for {
		uc, err := p.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		err = uc.send(ctx, head)
		if err == nil {
			return uc, nil
		}
		_ = uc.c.Close()
		if !uc.reused || !errors.Is(err, errIdleClosed) || ctx.Err() != nil {
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

func (uc *upConn) send(ctx context.Context, head func(*bufio.Writer)) error {
	defer uc.afterCancel(ctx)()
	head(uc.bw)
	if err := uc.bw.Flush(); err != nil {
		if uc.reused && closedByPeer(err) {
			return errIdleClosed
		}
		return fmt.Errorf("send request: %w", err)
	}
	if _, err := uc.br.Peek(1); err != nil {
		if uc.reused && closedByPeer(err) {
			return errIdleClosed
		}
		return fmt.Errorf("read response: %w", err)
	}
	return nil
}

// readFinal reads the head of the final response to a request with r's method, skipping
// interim ones (103 Early Hints).
func (uc *upConn) readFinal(ctx context.Context, r *http.Request) (*http.Response, error) {
	defer uc.afterCancel(ctx)()
	for {
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue
		}
		return resp, nil
	}
}

// closedByPeer reports whether err means the other side had closed the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// isHop holds the headers that are meaningful for one connection only and never forwarded
// (RFC 9110 §7.6.1), in canonical form.
var isHop = map[string]bool{"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true}

// isForwarding holds the headers the edge writes itself, and the hop header it sets per target.
var isForwarding = map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "Forwarded": true, HeaderForwardedBy: true}

// connectionListed returns the canonical names the Connection header of h lists, or nil.
func connectionListed(h http.Header) map[string]bool {
	vs := h["Connection"]
	if len(vs) == 0 {
		return nil
	}
	out := map[string]bool{}
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out[http.CanonicalHeaderKey(f)] = true
			}
		}
	}
	return out
}

// removeHop deletes hop-by-hop headers, including those the Connection header names.
func removeHop(h http.Header) {
	for k := range connectionListed(h) {
		delete(h, k)
	}
	for k := range h {
		if isHop[k] {
			delete(h, k)
		}
	}
}

// writeHead writes the request head sent upstream: the client's end-to-end headers, the
// forwarding headers and, towards a secondary edge, the hop header. Header values came from a
// parsed request or from the edge, so they hold no line breaks; field order does not matter.
func writeHead(bw *bufio.Writer, r *http.Request, f *forwarding, hop string) {
	_, _ = bw.WriteString(r.Method)
	_ = bw.WriteByte(' ')
	_, _ = bw.WriteString(r.URL.RequestURI())
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(r.Host)
	_, _ = bw.WriteString("\r\n")
	listed := connectionListed(r.Header)
	for k, vs := range r.Header {
		if isHop[k] || isForwarding[k] || listed[k] {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	if te := r.Header["Te"]; len(te) > 0 && strings.Contains(strings.ToLower(strings.Join(te, ",")), "trailers") {
		writeField(bw, "Te", "trailers")
	}
	for i, v := range f.values() {
		writeField(bw, forwardingHeaders[i], v)
	}
	if hop != "" {
		writeField(bw, HeaderForwardedBy, hop)
	}
	_, _ = bw.WriteString("\r\n")
}

func writeField(bw *bufio.Writer, k, v string) {
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(v)
	_, _ = bw.WriteString("\r\n")
}

// serveFast proxies a request without a body: to the first target of its plan and, after a
// connection error, once more to the next one (a request without a body was either never sent,
// or is retried only when its method is idempotent or listed in retry_methods).
func (a *app) serveFast(w http.ResponseWriter, r *http.Request) {
	rt := a.route.Load()
	forwarded := r.Header.Get(HeaderForwardedBy) != ""
	plan := a.plan(rt, forwarded)
	if len(plan) == 0 {
		if forwarded && !rt.Available {
			a.fail(w, r, errLoop)
		} else {
			a.fail(w, r, errNoTarget)
		}
		return
	}
	f := a.forwardingOf(r)
	ctx := r.Context()
	var err error
	for i, t := range plan[:min(2, len(plan))] {
		pool, hop := a.pool, ""
		switch {
		case t.Secondary:
			pool, hop = a.peerPool, a.edge.name
		case forwarded:
			hop = r.Header.Get(HeaderForwardedBy)
		}
		var resp *http.Response
		var uc *upConn
		start := a.metrics.start()
		resp, uc, err = pool.exchange(ctx, t.Addr, func(bw *bufio.Writer) { writeHead(bw, r, &f, hop) }, r)
		if err == nil {
			a.metrics.attempted(i, t.Secondary, start, resp.StatusCode)
			a.relay(w, r, resp, uc, pool, t.Addr)
			return
		}
		a.metrics.attempted(i, t.Secondary, start, 0)
		if ctx.Err() != nil {
			return
		}
		a.failed(rt, t, err)
		if i == 0 && !isDialError(err) && !rt.retry[r.Method] {
			break
		}
	}
	if forwarded && !rt.Available {
		err = fmt.Errorf("%w (last error: %w)", errLoop, err)
	}
	a.fail(w, r, err)
}

// relay writes resp to the client and returns the connection to the pool when the body was
// read to its end and the instance keeps the connection open.
func (a *app) relay(w http.ResponseWriter, r *http.Request, resp *http.Response, uc *upConn, pool *connPool, addr string) {
	removeHop(resp.Header)
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
	_ = resp.Body.Close()
	for k, v := range resp.Trailer {
		dst[http.TrailerPrefix+k] = v
	}
	if err != nil || resp.Close || r.Context().Err() != nil {
		_ = uc.c.Close()
		return
	}
	pool.put(addr, uc)
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
