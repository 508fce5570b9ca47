package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Headers the edges exchange.
const (
	// HeaderForwardedBy marks a request one edge forwarded to its secondary; it names the edge.
	// A request that carries it is never forwarded again.
	HeaderForwardedBy = "Detour-Forwarded-By"
	// HeaderPing asks an edge whether it serves; it answers 204 itself, naming itself in HeaderEdge.
	HeaderPing = "Detour-Edge-Ping"
	// HeaderEdge names the edge that answered a ping.
	HeaderEdge = "Detour-Edge"
)

// errLoop is the reason a request forwarded by another edge fails when the local pool cannot
// take it either.
var errLoop = errors.New("the local pool is down and the request was already forwarded by another edge: not forwarding it again")

// errNoTarget is the reason a request fails when the route offers nowhere to send it.
var errNoTarget = errors.New("no instance and no secondary edge to send the request to")

type httpServer struct {
	app *app
	ln  net.Listener
	srv *http.Server
	// front serves plain requests itself and passes other connections to srv through handoff.
	front   frontConns
	handoff *handoff
}

func newHTTPServer(a *app, ln net.Listener) *httpServer {
	rp := &httputil.ReverseProxy{
		Rewrite:      a.rewrite,
		Transport:    a,
		ErrorHandler: a.fail,
		ErrorLog:     log.New(httpErrorLog{a.log}, "", 0),
		BufferPool:   bufferPool{},
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	a.transport = newTransport(nil)
	a.peerTransport = newTransport(a.edge.source)
	a.pool = newConnPool(dialFrom(nil))
	a.peerPool = newConnPool(dialFrom(a.edge.source))
	return &httpServer{app: a, ln: ln, front: frontConns{idle: map[net.Conn]*atomic.Bool{}}, handoff: newHandoff(ln.Addr()), srv: &http.Server{
		Handler:           a.handler(rp),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(httpErrorLog{a.log}, "", 0),
	}}
}

// newTransport returns the transport to instances (source nil) or to secondary edges (source:
// this edge's address, so the peer recognises it).
func newTransport(source net.IP) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         dialFrom(source),
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

func (s *httpServer) serve(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(s.handoff) }()
	accepting := make(chan error, 1)
	go func() { accepting <- s.accept() }()
	var failed error
	select {
	case failed = <-done:
		done = nil
	case failed = <-accepting:
		accepting = nil
	case <-ctx.Done():
	}
	_ = s.ln.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.front.shutdown(sctx) })
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	wg.Wait()
	if done != nil {
		<-done
	}
	if accepting != nil {
		<-accepting
	}
	s.app.transport.CloseIdleConnections()
	s.app.peerTransport.CloseIdleConnections()
	s.app.pool.closeIdle()
	s.app.peerPool.closeIdle()
	if failed != nil {
		return fmt.Errorf("serve app %s on %s: %w", s.app.name, s.ln.Addr(), failed)
	}
	return nil
}

// handler answers pings from peer edges, proxies requests without a body on the fast path and
// everything else (bodies, upgrades) through httputil.ReverseProxy.
func (a *app) handler(rp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderPing) != "" {
			w.Header().Set(HeaderEdge, a.edge.name)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.ContentLength == 0 && r.Method != http.MethodConnect && r.Header.Get("Upgrade") == "" {
			a.serveFast(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// rewrite prepares the outbound request of the ReverseProxy path: the target is chosen per
// attempt in RoundTrip, the Host header is kept and the forwarding headers are set.
func (a *app) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.Host = pr.In.Host
	a.forwardHeaders(pr.In, pr.Out.Header)
}

// forwarding is the value of each forwarding header for one request.
type forwarding struct {
	xff, xfh, xfp, fwd string
}

// forwardingHeaders is the order forwarding's fields are written in.
var forwardingHeaders = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

func (f *forwarding) values() [4]string { return [4]string{f.xff, f.xfh, f.xfp, f.fwd} }

// forwardHeaders sets X-Forwarded-For/Host/Proto and Forwarded (RFC 7239) on out.
func (a *app) forwardHeaders(in *http.Request, out http.Header) {
	f := a.forwardingOf(in)
	for i, v := range f.values() {
		out[forwardingHeaders[i]] = []string{v}
	}
}

// forwardingOf describes in's client. The forwarding headers are trusted only from another
// edge, whose values are extended; a client's own are replaced.
func (a *app) forwardingOf(in *http.Request) forwarding {
	client, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		client = in.RemoteAddr
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	node := client
	if strings.Contains(client, ":") {
		node = `"[` + client + `]"`
	}
	f := forwarding{xff: client, xfh: in.Host, xfp: proto,
		fwd: "for=" + node + ";host=" + quoteForwarded(in.Host) + ";proto=" + proto}
	if _, hop := in.Header[HeaderForwardedBy]; !hop || !a.edge.forwardedByEdge(remoteAddr(in.RemoteAddr)) {
		return f
	}
	if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		f.xff = strings.Join(prior, ", ") + ", " + client
	}
	if v := in.Header.Get("X-Forwarded-Host"); v != "" {
		f.xfh = v
	}
	if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
		f.xfp = v
	}
	if prior := in.Header.Values("Forwarded"); len(prior) > 0 {
		f.fwd = strings.Join(prior, ", ") + ", " + f.fwd
	}
	return f
}

// quoteForwarded quotes a Forwarded parameter value when it is not a token (RFC 7239 §4).
func quoteForwarded(v string) string {
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
	}
	return v
}

type tcpAddr string

func (t tcpAddr) Network() string { return "tcp" }
func (t tcpAddr) String() string  { return string(t) }

func remoteAddr(s string) net.Addr { return tcpAddr(s) }

// RoundTrip sends one proxied request to the first target of its plan and, when that fails on
// a connection error, once more to the next: always when nothing was sent yet (the dial failed),
// and for idempotent methods (GET, HEAD, OPTIONS and the app's retry_methods) whose body was not
// read yet otherwise.
func (a *app) RoundTrip(req *http.Request) (*http.Response, error) {
	r := a.route.Load()
	forwarded := req.Header.Get(HeaderForwardedBy) != ""
	plan := a.plan(r, forwarded)
	if len(plan) == 0 {
		if forwarded && !r.Available {
			return nil, errLoop
		}
		return nil, errNoTarget
	}
	var body *replayableBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayableBody{rc: req.Body}
		req.Body = body
	}
	var err error
	for i, t := range plan[:min(2, len(plan))] {
		if i > 0 {
			req = req.Clone(req.Context())
		}
		req.URL.Host = t.Addr
		tr := a.transport
		switch {
		case t.Secondary:
			req.Header.Set(HeaderForwardedBy, a.edge.name)
			tr = a.peerTransport
		case !forwarded:
			req.Header.Del(HeaderForwardedBy)
		}
		var resp *http.Response
		start := a.metrics.start()
		resp, err = tr.RoundTrip(req)
		if err == nil {
			a.metrics.attempted(i, t.Secondary, start, resp.StatusCode)
			return resp, nil
		}
		a.metrics.attempted(i, t.Secondary, start, 0)
		if req.Context().Err() != nil {
			return nil, err
		}
		a.failed(r, t, err)
		if !isDialError(err) && (!r.retry[req.Method] || body.started()) {
			break
		}
	}
	if forwarded && !r.Available {
		return nil, fmt.Errorf("%w (last error: %w)", errLoop, err)
	}
	return nil, err
}

// fail answers a request that could not be proxied with 502 and the reason.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		return
	}
	a.metrics.failed()
	a.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Err(err).Msg("request failed")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, "detour edge "+a.edge.name+": app "+a.name+": "+err.Error()+"\n")
}

// replayableBody lets a request body be sent again after a connection error if none of it was
// read: the transport closes a body when an attempt fails, so closing is deferred to the end.
type replayableBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *replayableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

// Close closes a body that was read, which can never be replayed; an unread one stays open for
// the next attempt, and the server closes it when the request ends.
func (b *replayableBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

func (b *replayableBody) started() bool { return b != nil && b.read.Load() }

// bufferPool recycles the buffers ReverseProxy copies bodies with.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
