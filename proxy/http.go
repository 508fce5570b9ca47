package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
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

type httpServer struct {
	app *app
	ln  net.Listener
	// srv serves the connections the front passes on before it served a request on them; h1,
	// which speaks HTTP/1 alone, those it passes on after. net/http takes the HTTP/2 preface for
	// prior knowledge (RFC 9113 §3.3) at a connection's start only and answers it later on as an
	// HTTP/1 request; srv would take a connection passed on mid-way for one at its start.
	srv, h1 *http.Server
	// front serves plain requests itself and passes other connections to srv through handoff,
	// or to h1 through h1Handoff.
	front              frontConns
	handoff, h1Handoff *handoff
	// tunnels are the connections srv and h1 handed over (upgrades), closed with the listener.
	tunnels tunnels
	// stopped is closed as the listener is, so that a connection waiting for a place under
	// the edge's max_conns is closed (see app.admit).
	stopped chan struct{}
}

func newHTTPServer(a *app, ln net.Listener) *httpServer {
	rp := &httputil.ReverseProxy{
		Rewrite:      a.rewrite,
		Transport:    a,
		ErrorHandler: a.fail,
		ErrorLog:     log.New(httpErrorLog{a.log}, "", 0),
		BufferPool:   bufferPool{},
	}
	t := a.pol.timeouts
	a.transport = newTransport(nil, a.pol)
	a.peerTransport = newTransport(a.edge.source, a.pol)
	a.pool = newConnPool(dialFrom(nil, t.Connect.D()), t.Idle.D(), t.ResponseBody.D())
	a.peerPool = newConnPool(dialFrom(a.edge.source, t.Connect.D()), t.Idle.D(), t.ResponseBody.D())
	handler := a.handler(rp)
	s := &httpServer{app: a, ln: ln, front: frontConns{idle: map[net.Conn]*atomic.Bool{}},
		handoff: newHandoff(ln.Addr()), h1Handoff: newHandoff(ln.Addr()), stopped: make(chan struct{})}
	server := func(h2c bool) *http.Server {
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(h2c)
		return &http.Server{
			Handler:           handler,
			Protocols:         &protocols,
			ReadHeaderTimeout: t.ClientHeader.D(),
			IdleTimeout:       t.Idle.D(),
			// net/http allows 4096 bytes more than MaxHeaderBytes.
			MaxHeaderBytes: max(a.pol.maxHeaderBytes-4096, 1),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, clientConnKey{}, c)
			},
			ErrorLog: log.New(httpErrorLog{a.log}, "", 0),
			ConnState: func(c net.Conn, st http.ConnState) {
				if g, ok := c.(*guardedConn); ok && st == http.StateHijacked {
					s.tunnels.add(g)
				}
			},
		}
	}
	s.srv, s.h1 = server(true), server(false)
	return s
}

// newTransport returns the transport to instances (source nil) or to secondary edges (source:
// this edge's address, so the peer recognises it), with p's timeouts.
func newTransport(source net.IP, p *policy) *http.Transport {
	dial := dialFrom(source, p.timeouts.Connect.D())
	return &http.Transport{
		Proxy: nil,
		// RoundTrip watches the framing of the answers (see watchedConn).
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &watchedConn{Conn: c}, nil
		},
		// The buffer the fast paths read answers through (see upstreamReadBuffer).
		ReadBufferSize:        upstreamReadBuffer,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       p.timeouts.Idle.D(),
		ResponseHeaderTimeout: p.timeouts.ResponseHeader.D(),
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
}

func (s *httpServer) serve(ctx context.Context) error {
	done := make(chan error, 2)
	go func() { done <- s.srv.Serve(s.handoff) }()
	go func() { done <- s.h1.Serve(s.h1Handoff) }()
	serving := 2
	accepting := make(chan error, 1)
	go func() { accepting <- s.accept() }()
	var failed error
	select {
	case failed = <-done:
		serving--
	case failed = <-accepting:
		accepting = nil
	case <-ctx.Done():
	}
	close(s.stopped)
	_ = s.ln.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.front.shutdown(sctx) })
	for _, srv := range []*http.Server{s.srv, s.h1} {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	s.tunnels.close()
	for ; serving > 0; serving-- {
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

// handler answers pings from peer edges, refuses requests whose framing, pseudo-header fields
// or host field RFC 9112 §6 or RFC 9113 §8.1 and §8.3.1 forbid that net/http lets through,
// proxies requests without a body on the fast path and everything else (bodies, upgrades)
// through httputil.ReverseProxy, the body's every read bounded by client_body.
func (a *app) handler(rp http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := a.pol.timeouts.ClientWrite.D(); r.ProtoMajor == 2 && d > 0 {
			sw := &streamWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d, conn: clientConnOf(r.Context())}
			w = sw
			// net/http writes what it still buffers (up to 4 KiB, all of a short answer) once
			// the handler returned, out of streamWriter's reach: the stream's own deadline
			// bounds that last write, and the stream counts as answered until then.
			defer func() {
				sw.answering(d)
				_ = sw.rc.SetWriteDeadline(time.Now().Add(d))
			}()
		}
		if g, ok := r.Context().Value(clientConnKey{}).(*guardedConn); ok && r.ProtoMajor == 1 {
			// In this order, and the reverse below, so that a read between two stores finds
			// the request awaiting.
			g.awaiting.Store(true)
			g.served.Add(1)
			g.serving.Store(true)
			// Once the handler returned, what is left of the answer is written whatever the
			// client did, and the end net/http reads then is the connection's, unless a
			// pipelined request read after this one waits for its answer (awaits).
			defer func() {
				g.serving.Store(false)
				g.awaiting.Store(false)
				g.halfClosed.Store(false)
			}()
		}
		if msg := badRequest(r); msg != "" {
			http.Error(w, msg, http.StatusBadRequest)
			return
		}
		if r.Header.Get(HeaderPing) != "" {
			w.Header().Set(HeaderEdge, a.edge.name)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.ContentLength == 0 && r.Method != http.MethodConnect && r.Header.Get("Upgrade") == "" {
			a.serveFast(w, r)
			return
		}
		// A body is read only here: the fast paths forward none. A CONNECT's is a tunnel, whose
		// silences are not a slow body.
		if d := a.pol.timeouts.ClientBody.D(); d > 0 && r.Body != nil && r.Body != http.NoBody && r.Method != http.MethodConnect {
			b := newTimedBody(r.Body, w, r, d)
			defer b.end()
			r.Body = b
		}
		if r.ProtoMajor == 1 && r.ContentLength > 0 {
			r.Body = newSizedBody(r.Body, r.ContentLength)
		}
		if r.ProtoMajor == 1 && r.ContentLength != 0 && r.Method != http.MethodConnect {
			dw := duplex(w, r.Body)
			defer dw.end(a.pol.timeouts.ClientBody.D())
			w, r.Body = dw, dw.body
		}
		rp.ServeHTTP(w, withInterimRelay(w, withHops(r)))
	})
}

// badRequest returns why r is malformed in a way net/http's server lets through, or "" when it
// is not. Its host may not hold an IPv6 zone, which RFC 3986 §3.2.2 has no place for in a URI
// and which no client has a use for at a server: http.Transport drops it from the Host it
// sends, and the fast path forwarded it as it came.
func badRequest(r *http.Request) string {
	msg := badH1Target
	if r.ProtoMajor == 2 {
		msg = badH2Request
	}
	if m := msg(r); m != "" {
		return m
	}
	if strings.HasPrefix(r.Host, "[") && strings.Contains(r.Host, "%") {
		return "an IPv6 zone in the host"
	}
	return ""
}

// badH1Target returns why an HTTP/1 request's target is malformed in a way net/http's server
// lets through, or "" when it is not. In absolute form (RFC 9112 §3.2.2), the target's host
// replaces the Host field, and net/http takes it for r.Host unchecked: a malformed one would go
// upstream as it came on the fast path and as an empty Host through http.Transport, so it is
// refused as net/http refuses a malformed Host field. A target other than CONNECT's in
// authority form (RFC 9112 §3.2.3), or any other without a path, net/http reads as an opaque
// URI, whose opaque part every path would forward as the target.
func badH1Target(r *http.Request) string {
	if r.Method != http.MethodConnect {
		if t := r.URL.RequestURI(); !strings.HasPrefix(t, "/") && t != "*" {
			return "malformed request target: want an absolute path or an absolute URI"
		}
	}
	if !httpguts.ValidHostHeader(r.Host) {
		return "malformed host in the request target"
	}
	return ""
}

// badH2Request returns why an HTTP/2 request is malformed in a way net/http's HTTP/2 server
// lets through, or "" when it is not. Every path forwards the request over HTTP/1.1, so it is
// held to what net/http's HTTP/1.1 server checks of a request line and Host.
func badH2Request(r *http.Request) string {
	// RFC 9110 §9.1: a method is a token, as a field name is. net/http's HTTP/2 server takes
	// any :method, which the fast path would write into the request line upstream: "GET
	// /admin?" makes another target for a server that splits the line at its outer spaces.
	if !httpguts.ValidHeaderFieldName(r.Method) {
		return "malformed :method"
	}
	if r.Method != http.MethodConnect || r.Header.Get(":protocol") != "" {
		if msg := badH2Path(r.Method, r.RequestURI); msg != "" {
			return msg
		}
	}
	// RFC 9113 §8.3.1: host[:port], without userinfo (which net/http refuses itself). Every
	// path would forward another one differently: the fast path as it came, http.Transport
	// as an empty Host.
	if !httpguts.ValidHostHeader(r.Host) {
		return "malformed :authority"
	}
	// RFC 9113 §8.3.1: a host field must not disagree with :authority, which net/http's HTTP/2
	// server takes for the Host (without one, the first host field's value). Every path
	// forwards that Host and drops the field, so a request a proxy or firewall in front of the
	// edge checked or routed by its host field would reach another virtual host upstream.
	// Several fields are refused as net/http's HTTP/1.1 server refuses several Host fields.
	if hs := r.Header["Host"]; len(hs) > 1 {
		return "several host fields"
	} else if len(hs) == 1 && !fold([]byte(hs[0]), r.Host) {
		return "host field " + strconv.Quote(hs[0]) + " disagrees with :authority " + strconv.Quote(r.Host)
	}
	return badH2Length(r)
}

// badH2Path returns why target, an HTTP/2 request's :path, is not one RFC 9113 §8.3.1 allows:
// the absolute path of the target and its query, or "*" for OPTIONS. net/http's HTTP/2 server
// refuses a :path with control characters, or that is no URI, but not one with a space, which
// would end the target of the request line the edge writes upstream (RFC 9112 §3).
func badH2Path(method, target string) string {
	if target == "*" {
		if method == http.MethodOptions {
			return ""
		}
		return "malformed :path: * is for OPTIONS only"
	}
	if !strings.HasPrefix(target, "/") {
		return "malformed :path: want an absolute path"
	}
	if strings.ContainsFunc(target, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return "malformed :path: a space or a control character"
	}
	return ""
}

// badH2Length returns why an HTTP/2 request's content-length is malformed (RFC 9113 §8.1.1):
// several values, or one its body, ended with its headers, cannot match. A body that ends
// short or runs long is caught by net/http while it is read (see replayableBody).
func badH2Length(r *http.Request) string {
	vs, ok := r.Header["Content-Length"]
	if !ok {
		return ""
	}
	if len(vs) != 1 {
		return "several content-length fields"
	}
	// Digits only (RFC 9110 §8.6), as net/http reads it over HTTP/1.1: ParseInt would take a sign.
	n, err := strconv.ParseUint(vs[0], 10, 63)
	if err != nil {
		return "malformed content-length"
	}
	if r.ContentLength == 0 && n != 0 {
		return "content-length " + vs[0] + " on a request without a body"
	}
	return ""
}

// rewrite prepares the outbound request of the ReverseProxy path: the target is chosen per
// attempt in RoundTrip, the Host header and the query are kept as they came (ReverseProxy drops
// the query's parameters url.ParseQuery refuses, which the lean and fast paths forward), the
// header is the policy's (upstreamHeader), with the upgrade ReverseProxy carries itself (of a
// request without a body), and the client's trailers are dropped.
func (a *app) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = pr.In.Host
	upgrade := pr.Out.Header.Get("Upgrade")
	f := a.forwardingOf(pr.In)
	pr.Out.Header = upstreamHeader(pr.In.Header, &f, a.forwardedBy(pr.In), a.pol.underscores)
	// An upgrade of a request with a body is ignored, as RFC 9110 §7.8 lets a server: the new
	// protocol would start only after the body (RFC 9112 §9.9), and an instance that switches
	// before it came would have ReverseProxy's tunnel and the transport's body read the client's
	// connection at once, the rest of the body and the tunnel's bytes going either way.
	if upgrade != "" && pr.In.ContentLength == 0 {
		pr.Out.Header["Connection"] = []string{"Upgrade"}
		pr.Out.Header["Upgrade"] = []string{upgrade}
	}
	// The client's trailers are dropped, as the fast paths, which forward no body, drop them
	// (RFC 9112 §7.1.2 lets a recipient that removes the chunked coding discard them): RFC 9110
	// §6.5.1 forbids sending a field as a trailer unless its definition allows it, which the
	// edge cannot know of an app's fields, and an instance that merges trailers into the header
	// would take a client's X-Forwarded-For or Host for the edge's. The transport would declare
	// the names the client declared (Trailer: Host, …) and send none of the values, which
	// arrive in In's trailer, not in Out's copy.
	pr.Out.Trailer = nil
}

// forwardedBy returns the edge that forwarded r, the last its HeaderForwardedBy fields name,
// when r came from the address of another configured edge; "" otherwise. A client cannot set
// it: from any other address the field is ignored and dropped, so the request may still go to
// a secondary.
func (a *app) forwardedBy(r *http.Request) string {
	vs := r.Header.Values(HeaderForwardedBy)
	if len(vs) == 0 || !a.edge.forwardedByEdge(remoteAddr(r.RemoteAddr)) {
		return ""
	}
	last := ""
	for n := range hops(vs) {
		last = n
	}
	return last
}

// cameBack reports whether the HeaderForwardedBy fields vs of a request name this edge, from
// whatever address: the request left this edge for a secondary and came back through edges
// that did not know its sender for an edge (an edges[].address that is not where their
// connections come from, behind a NAT say), and is never forwarded again, where it bounced
// between the edges until they ran out of descriptors. A client naming the edge itself turns
// forwarding off for its own request only.
func (a *app) cameBack(vs []string) bool {
	for n := range hops(vs) {
		if n == a.edge.name {
			return true
		}
	}
	return false
}

// peerHop is the HeaderForwardedBy field towards a secondary of a request whose own fields are
// vs: the configured edges they name, whoever sent them, each once, then this edge, so that an
// edge it comes back to sees itself named (cameBack) though it did not know the sender for an
// edge. Other names (a client's) are dropped: the field holds each edge's name once at most,
// however many names a client sent, which would take the head past the secondary's
// max_header_bytes with the edge's forwarding fields.
func (a *app) peerHop(vs []string) string {
	if len(vs) == 0 {
		return a.edge.name
	}
	var kept []string
	for n := range hops(vs) {
		if a.edge.names[n] && n != a.edge.name && !slices.Contains(kept, n) {
			kept = append(kept, n)
		}
	}
	return strings.Join(append(kept, a.edge.name), ", ")
}

// hops yields the names the HeaderForwardedBy values vs list, in order.
func hops(vs []string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for _, v := range vs {
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n != "" && !yield(n) {
					return
				}
			}
		}
	}
}

type hopsKey struct{}

// withHops returns r with its HeaderForwardedBy fields in its context, for RoundTrip, which
// sees only the request upstream (rewrite drops a client's); r itself when it has none.
func withHops(r *http.Request) *http.Request {
	vs := r.Header.Values(HeaderForwardedBy)
	if len(vs) == 0 {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), hopsKey{}, vs))
}

// forwarding is the value of each forwarding header for one request.
type forwarding struct {
	xff, xfh, xfp, fwd string
}

// forwardingHeaders is the order forwarding's fields are written in.
var forwardingHeaders = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"}

func (f *forwarding) values() [4]string { return [4]string{f.xff, f.xfh, f.xfp, f.fwd} }

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
	if a.forwardedBy(in) == "" {
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

// RoundTrip sends one proxied request to the targets of its plan as the policy says (forward):
// the next target is tried after a failure that the policy retries, and after an answer whose
// status retry_on names.
func (a *app) RoundTrip(req *http.Request) (*http.Response, error) {
	r := a.route.Load()
	hops, _ := req.Context().Value(hopsKey{}).([]string)
	// Set by rewrite only when another edge sent it.
	forwarded := req.Header.Get(HeaderForwardedBy) != "" || a.cameBack(hops)
	plan := a.plan(r, forwarded)
	if len(plan) == 0 {
		if forwarded && !r.Available {
			return nil, errLoop
		}
		return nil, errNoTarget
	}
	ir := interimRelayOf(req.Context())
	defer ir.end()
	var body *replayableBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayableBody{rc: req.Body, first: ir.bodyRead}
		req.Body = body
	}
	var resp *http.Response
	out := req
	// A client whose body fails (cut short, or stopped for client_body) leaves like one that
	// went away: the failure is not held against the target.
	gone := func() bool { return req.Context().Err() != nil || body.broke() }
	replayable := func() bool { return !body.started() && !ir.relayed() }
	err := a.forward(gone, r, plan, r.retry[req.Method], replayable,
		func(at *attempt) error {
			t := at.t
			if out != req || t.Secondary {
				out = req.Clone(req.Context())
			}
			out.URL.Host = t.Addr
			tr := a.transport
			if t.Secondary {
				out.Header.Set(HeaderForwardedBy, a.peerHop(hops))
				tr = a.peerTransport
			}
			var wc *watchedConn
			ir.begin(at.i)
			trace := relayTrace(ir, at.i, func(info httptrace.GotConnInfo) {
				if wc, _ = info.Conn.(*watchedConn); wc != nil {
					wc.expect()
				}
			})
			res, err := tr.RoundTrip(out.WithContext(httptrace.WithClientTrace(untraced{out.Context()}, trace)))
			if err != nil {
				ir.over(at.i)
			} else {
				if err = checkStatus(res.StatusCode); err == nil && wc != nil && wc.ambiguous() {
					// Closed before its end, the body takes its connection with it.
					err = errAmbiguousLength
				} else if err == nil {
					err = checkSwitch(out.Header, res)
				}
				if err != nil {
					_ = res.Body.Close()
				}
			}
			if err != nil {
				return err
			}
			a.answered(at, res.StatusCode)
			if a.retryAnswer(at, res.StatusCode, replayable()) {
				_ = res.Body.Close()
				return &statusError{res.StatusCode}
			}
			watchTrailer(res)
			// An upgraded connection's silences are not a stalled body.
			if d := a.pol.timeouts.ResponseBody.D(); d > 0 && wc != nil && res.Body != http.NoBody && res.StatusCode != http.StatusSwitchingProtocols {
				res.Body = newStallBody(res.Body, wc, d, a, t)
			}
			resp = res
			return nil
		})
	if err == nil {
		return resp, nil
	}
	if body != nil {
		if tb, ok := body.rc.(*timedBody); ok && tb.expired.Load() {
			return nil, &clientBodyError{errClientBodyTimeout}
		}
		if body.broke() {
			return nil, &clientBodyError{*body.failed.Load()}
		}
	}
	if forwarded && !r.Available {
		return nil, fmt.Errorf("%w (last error: %w)", errLoop, err)
	}
	return nil, err
}

// checkSwitch fails an attempt on the ReverseProxy path answered 101 Switching Protocols to a
// request whose header h forwarded no upgrade (a request with a body, whose upgrade the edge
// drops, or one that asked for none), or to another protocol than h asked for: what follows
// is no answer, and the connection, which the answer's body owns, is closed with it.
// httputil.ReverseProxy answers such a switch with its error handler and never closes that
// body, so the connection stayed open until the instance closed it.
func checkSwitch(h http.Header, res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	asked := h.Get("Upgrade")
	if asked == "" {
		return errUnaskedSwitch
	}
	got := ""
	if httpguts.HeaderValuesContainsToken(res.Header["Connection"], "Upgrade") {
		got = res.Header.Get("Upgrade") // as ReverseProxy reads it
	}
	if !strings.EqualFold(got, asked) {
		return fmt.Errorf("the instance switched protocols (101) to %q, not to %q as requested", got, asked)
	}
	return nil
}

// clientBodyError is the failure of a request whose client's body could not be read: it ended
// before its declared length, or an HTTP/2 one ran past it (answered 400), or it stopped
// arriving for client_body (errClientBodyTimeout, answered 408).
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }

func (e *clientBodyError) Unwrap() error { return e.err }

// fail answers a request that could not be proxied, with the status's text only (failBody): 502,
// logged with the reason, or 400 when the client's body was malformed, or 408 when it stopped
// arriving for client_body. A client gone gets no answer.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	slow := errors.Is(err, errClientBodyTimeout)
	unreadable := endedPastBody(r)
	if r.Context().Err() != nil && !slow && !unreadable {
		// The client went away (net/http's HTTP/1.1 server cancels the context of a request
		// whose read failed, client_body's included, or found the connection's end: a client
		// that half-closed it after its request may still read). Its connection (its stream)
		// ends without an answer: a handler that writes none has net/http's server answer 200
		// for it, and a client that only half-closed would take it for the instance's.
		panic(http.ErrAbortHandler)
	}
	code := http.StatusBadGateway
	switch {
	case slow:
		code = http.StatusRequestTimeout
		if r.ProtoMajor == 1 {
			// The rest of the body may still come: the connection cannot carry another request.
			w.Header().Set("Connection", "close")
		}
	case unreadable || errors.As(err, new(*clientBodyError)):
		code = http.StatusBadRequest
	default:
		a.metrics.failed()
		a.logFailure(r.Method, r.URL.Path, err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, failBody(code))
}

// endedPastBody reports whether the client of r, an HTTP/1 request, half-closed its connection
// right after a chunked body whose trailer does not end in CRLF CRLF ("0\r\n\n"): the guard saw
// the body whole, but net/http looks for the trailer's end further on, finds the client's end
// and fails the body, cancelling the request as if the client had left. The client, which sent
// all of its request and waits for the answer, is answered 400, as for any other chunked body
// net/http cannot read to its end, not left without one.
func endedPastBody(r *http.Request) bool {
	g, ok := r.Context().Value(clientConnKey{}).(*guardedConn)
	return ok && r.ProtoMajor == 1 && g.endPast.Load()
}

// replayableBody lets a request body be sent again after a connection error if none of it was
// read: the transport closes a body when an attempt fails, so closing is deferred to the end.
type replayableBody struct {
	rc io.ReadCloser
	// first is called before the body is first read.
	first func()
	read  atomic.Bool
	// failed holds the client's error reading the body, other than its end.
	failed atomic.Pointer[error]
}

func (b *replayableBody) Read(p []byte) (int, error) {
	if !b.read.Swap(true) {
		b.first()
	}
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.failed.CompareAndSwap(nil, &err)
	}
	return n, err
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

// broke reports whether reading the client's body failed.
func (b *replayableBody) broke() bool { return b != nil && b.failed.Load() != nil }

// bufferPool recycles the buffers ReverseProxy copies bodies with.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

type clientConnKey struct{}

// clientConnOf returns the client's connection of a request whose context is ctx, when the
// edge accepted it (a clientConn, handed to net/http in a guardedConn); nil otherwise.
func clientConnOf(ctx context.Context) *clientConn {
	c, _ := ctx.Value(clientConnKey{}).(net.Conn)
	if g, ok := c.(*guardedConn); ok {
		c = g.Conn
	}
	cc, _ := c.(*clientConn)
	return cc
}

// streamWriter bounds every write and flush to an HTTP/2 client by client_write, as clientConn
// bounds an HTTP/1.1 client's: net/http's HTTP/2 server waits for flow-control window without
// end, so a client that grants none would otherwise hold the request, and its connection
// upstream, for ever. A write that makes no progress in time resets the stream, which ends it
// with an error. Progress is the write's end or, while the stream is the only one its
// connection (conn, when the edge accepted it) answers, a DATA frame's bytes written on the
// connection: a write of a chunk takes as many windows as the client grants it in, each a
// frame, and a client that takes its answer in small windows progresses with every one though
// the chunk takes longer than client_write. net/http does not say which stream a frame is
// for, so while several streams are answered at once each chunk must go within client_write:
// otherwise a client could keep one stream waiting for window for ever, and its connection
// upstream, by taking another's answer a byte at a time.
type streamWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	d    time.Duration
	conn *clientConn
}

// bound runs op, resetting the stream once neither op ended nor the connection took data for
// w.d.
func (w *streamWriter) bound(op func() error) error {
	if w.conn != nil {
		w.conn.answering.Add(1)
		defer w.conn.answering.Add(-1)
	}
	var mu sync.Mutex
	done := false
	start := time.Now()
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(w.d, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		if w.conn != nil {
			last := time.Unix(0, max(w.conn.dataAt.Load(), start.UnixNano()))
			if left := w.d - time.Since(last); left > 0 {
				t.Reset(left)
				return
			}
		}
		_ = w.rc.SetWriteDeadline(time.Unix(1, 0)) // in the past: resets the stream now
	})
	mu.Unlock()
	err := op()
	if !t.Stop() {
		// The reset may be under way: wait for it, or keep it from starting once the handler
		// may have returned.
		mu.Lock()
		done = true
		mu.Unlock()
	}
	return err
}

// answering counts the stream as answered on its connection for d, while net/http writes what
// it still buffers once the handler returned.
func (w *streamWriter) answering(d time.Duration) {
	if w.conn != nil {
		w.conn.answering.Add(1)
		time.AfterFunc(d, func() { w.conn.answering.Add(-1) })
	}
}

// streamChunk is how much of a write must go within w.d: net/http's HTTP/2 server hands its
// handler's writes on in chunks of this size, so a client that takes each within w.d is
// progressing, however long the whole write takes.
const streamChunk = 4 << 10

func (w *streamWriter) Write(p []byte) (n int, err error) {
	for first := true; first || len(p) > 0; first = false { // an empty write still writes the header
		c := p[:min(len(p), streamChunk)]
		var m int
		err = w.bound(func() error {
			var werr error
			m, werr = w.ResponseWriter.Write(c)
			return werr
		})
		n += m
		p = p[m:]
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// FlushError is what http.ResponseController's Flush calls.
func (w *streamWriter) FlushError() error { return w.bound(w.rc.Flush) }

// Unwrap lets http.ResponseController reach the server's writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
