package prober

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/events/config"
)

// sharedTransports hands out one HTTP transport per distinct TLS setting, shared by every http(s)
// check that uses it. Keep-alives are off: every check opens a new connection, as a new client
// would, so a listener that stopped accepting is seen at once.
type sharedTransports struct {
	mu sync.Mutex
	m  map[tlsKey]*http.Transport
}

type tlsKey struct {
	serverName string
	insecure   bool
}

func newSharedTransports() *sharedTransports {
	return &sharedTransports{m: map[tlsKey]*http.Transport{}}
}

func (s *sharedTransports) get(k tlsKey) *http.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.m[k]; ok {
		return t
	}
	t := &http.Transport{
		DialContext:       dialLiteral,
		DisableKeepAlives: true,
		// The check's context bounds everything; these only guard against a context without one.
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSClientConfig: &tls.Config{
			ServerName:         k.serverName,
			InsecureSkipVerify: k.insecure, //nolint:gosec // the user's explicit choice, off by default
			MinVersion:         tls.VersionTLS12,
		},
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      false,
	}
	t.DialTLSContext = dialTLS(t.TLSClientConfig)
	s.m[k] = t
	return t
}

// dialLiteral connects to an ip:port without the resolver: check addresses are always literals.
// The Transport dials with a context detached from the request's, so that a connection may serve
// a later request: a connect to an endpoint that never answers went on for the kernel's SYN
// retries (about 2 minutes) after its check ended, holding a socket and goroutines (at a check
// a second, over a hundred for one such endpoint, and a region cut off holds them for every
// endpoint). The check's context, which viaTransport hands down as a value (checkContext),
// ends the connect once it has ended, so that the client, finding the request's context ended,
// still reports that rather than the connect's error.
func dialLiteral(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := withCheck(ctx)
	defer cancel()
	return dialAddr(ctx, network, addr)
}

// dialAddr is dialLiteral's connect, with ctx already ended with the check (withCheck).
func dialAddr(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return d.DialContext(ctx, network, addr)
	}
	return d.DialTCP(ctx, network, netip.AddrPort{}, ap)
}

// dialTLS returns the Transport's DialTLSContext for cfg: dialLiteral, then the handshake the
// Transport would make (cfg's server name, else the address's host), ended with the check as
// the connect is, where the Transport's own went on for its TLSHandshakeTimeout (30 s) against
// a server that stalled it, a socket and goroutines each.
func dialTLS(cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := withCheck(ctx)
		defer cancel()
		conn, err := dialAddr(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := cfg.Clone()
		if c.ServerName == "" {
			if h, _, err := net.SplitHostPort(addr); err == nil {
				c.ServerName = h
			}
		}
		tc := tls.Client(conn, c)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// checkContext is the context key under which viaTransport hands its check's context to
// dialLiteral and dialTLS.
type checkContext struct{}

// withCheck returns ctx ended also once the check's context it carries has ended; cancel
// releases it.
func withCheck(ctx context.Context) (_ context.Context, cancel func()) {
	check, ok := ctx.Value(checkContext{}).(context.Context)
	if !ok {
		return ctx, func() {}
	}
	ctx, cancelCtx := context.WithCancel(ctx)
	stop := context.AfterFunc(check, cancelCtx)
	return ctx, func() { stop(); cancelCtx() }
}

// urlHostPort is ap as a URL writes it: an IPv6 zone's "%" escaped as "%25" (RFC 6874), which
// net/url reads back as the zone.
func urlHostPort(ap netip.AddrPort) string {
	return strings.Replace(hostPort(ap), "%", "%25", 1)
}

type statusRange struct{ lo, hi int }

type httpChecker struct {
	client *http.Client
	// hand, when set, runs the check instead of client (handHTTP).
	hand     *handHTTP
	https    bool
	dial     netip.AddrPort
	method   string
	url      string
	host     string
	headers  http.Header
	expect   []statusRange
	expectSt string
	contains string
	// files, when the check reads headers from files, builds the check with what they hold as
	// it runs; headers then lacks theirs.
	files *headerFiles
}

// newHTTPChecker prepares t's http(s) check, with its headers read from the environment and
// from files (files, one configuration's) as it is built.
func newHTTPChecker(t Target, shared *sharedTransports, files *checkFiles) (*httpChecker, error) {
	k := t.Check
	scheme := "http"
	var tk tlsKey
	if k.Type == config.CheckHTTPS {
		scheme = "https"
		tk = tlsKey{serverName: k.ServerName, insecure: k.InsecureSkipVerify}
		if tk.serverName == "" {
			// The Host header may carry a port; the server name is the host alone (RFC 6066).
			tk.serverName = k.Host
			if h, _, err := net.SplitHostPort(k.Host); err == nil {
				tk.serverName = h
			}
		}
	}
	c := &httpChecker{
		client: &http.Client{
			Transport: shared.get(tk),
			// A health check judges the answer it gets, as Route 53 and HAProxy do: a redirect is
			// a status like any other.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		method:   k.Method,
		url:      scheme + "://" + urlHostPort(t.Dial) + k.Path,
		host:     k.Host,
		headers:  http.Header{},
		expectSt: strings.Join(k.ExpectStatus, ","),
		contains: k.BodyContains,
		dial:     t.Dial,
		https:    k.Type == config.CheckHTTPS,
	}
	if c.method == "" {
		c.method = http.MethodGet
	}
	// Read when the check is built, at each configuration, and a file again as it changes
	// (headerFiles): a credential given in a file or the environment never reaches CONFIG.
	headers, err := k.ReadEnvHeaders()
	if err != nil {
		return nil, err
	}
	for name, v := range headers {
		c.headers.Set(name, v)
	}
	if c.headers.Get("User-Agent") == "" {
		c.headers.Set("User-Agent", "detour-prober/1")
	}
	if len(k.HeadersFile) > 0 {
		c.files = &headerFiles{}
		for _, name := range slices.Sorted(maps.Keys(k.HeadersFile)) {
			c.files.names = append(c.files.names, name)
			c.files.files = append(c.files.files, files.header(k.HeadersFile[name]))
		}
	}
	for i, s := range k.ExpectStatus {
		lo, hi, err := config.ParseStatusRange(s)
		if err != nil {
			return nil, fmt.Errorf("check.expect_status[%d]: %w", i, err)
		}
		c.expect = append(c.expect, statusRange{lo, hi})
	}
	if len(c.expect) == 0 {
		c.expect = []statusRange{{200, 399}}
		c.expectSt = "200-399"
	}
	if _, err := http.NewRequest(c.method, c.url, nil); err != nil {
		return nil, fmt.Errorf("check: build request: %w", err)
	}
	if c.files == nil {
		c.hand = newHandHTTP(c)
	}
	return c, nil
}

// headerFiles are the headers an http check reads from files, and the check as last built with
// what they held.
type headerFiles struct {
	names []string
	files []*config.WatchedFile
	built atomic.Pointer[builtCheck]
}

// builtCheck is an http check built with values of its header files.
type builtCheck struct {
	c      *httpChecker
	values []*config.FileValue
}

// check returns c built with what its header files hold now, built again only when one changed;
// the error names the header of a file that was never read well, and why.
func (h *headerFiles) check(c *httpChecker) (*httpChecker, error) {
	b := h.built.Load()
	for i, f := range h.files {
		if v := f.Load(); v.Err != nil || b == nil || b.values[i] != v {
			return h.build(c)
		}
	}
	return b.c, nil
}

// build returns c with the headers its files hold now, and keeps it for the runs after.
func (h *headerFiles) build(c *httpChecker) (*httpChecker, error) {
	with := *c
	with.files, with.headers = nil, c.headers.Clone()
	values := make([]*config.FileValue, len(h.files))
	for i, f := range h.files {
		values[i] = f.Load()
		if err := values[i].Err; err != nil {
			return nil, fmt.Errorf("check.headers_file.%s: %w", h.names[i], err)
		}
		with.headers.Set(h.names[i], values[i].S)
	}
	with.hand = newHandHTTP(&with)
	h.built.Store(&builtCheck{c: &with, values: values})
	return &with, nil
}

func (c *httpChecker) run(ctx context.Context) Outcome {
	if c.files != nil {
		with, err := c.files.check(c)
		if err != nil {
			return failure(ClassError, err)
		}
		c = with
	}
	if c.hand == nil {
		return c.viaTransport(ctx)
	}
	code, err := c.hand.status(ctx, c.dial)
	if err != nil {
		return httpFailure(err)
	}
	o := Outcome{HTTPStatus: code}
	if !c.statusOK(code) {
		o.Class, o.Err = ClassStatus, fmt.Sprintf("status %d, want %s", code, c.expectSt)
		return o
	}
	o.OK = true
	return o
}

// httpFailure is the outcome of a request that failed with err, which does not repeat the URL
// the client names in it: the check's path may carry a token (an api_key), and results are
// events every role and detour events may read.
func httpFailure(err error) Outcome {
	o := failure(classifyHTTP(err), err)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		o.Err = ue.Err.Error()
	}
	return o
}

// viaTransport runs the check with net/http's client.
func (c *httpChecker) viaTransport(ctx context.Context) Outcome {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, checkContext{}, ctx), c.method, c.url, nil)
	if err != nil {
		return failure(ClassError, err)
	}
	req.Header = c.headers.Clone()
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return httpFailure(err)
	}
	defer resp.Body.Close()
	o := Outcome{HTTPStatus: resp.StatusCode}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		days := time.Until(resp.TLS.PeerCertificates[0].NotAfter).Hours() / 24
		o.CertExpiryDays = &days
	}
	if !c.statusOK(resp.StatusCode) {
		o.Class, o.Err = ClassStatus, fmt.Sprintf("status %d, want %s", resp.StatusCode, c.expectSt)
		return o
	}
	if c.contains != "" {
		// The context ends the body's read, but for a 101 answer's, the connection the Transport
		// hands over: closing the body when the context ends ends that one too.
		stop := context.AfterFunc(ctx, func() { _ = resp.Body.Close() })
		defer stop()
		body, err := readUntil(resp.Body, c.contains)
		if err != nil && ctx.Err() != nil {
			err = ctx.Err() // what ended the read, not the closed connection's error
		}
		if err != nil && len(body) < len(c.contains) {
			o.Class, o.Err = classifyHTTP(err), fmt.Sprintf("read body: %v", err)
			return o
		}
		if !strings.Contains(string(body), c.contains) {
			o.Class, o.Err = ClassBody, fmt.Sprintf("the first %d bytes of the body lack %q", bodyLimit, c.contains)
			return o
		}
	}
	o.OK = true
	return o
}

// readUntil reads r until want appears in what it read, bodyLimit bytes are read, or r ends,
// and returns what it read and the error that ended it. Reading to the limit or the end, as
// io.ReadAll does, held a check whose server sent want and then kept its connection open (a
// page still coming, a stream) until its timeout, which its result gave as the latency.
func readUntil(r io.Reader, want string) ([]byte, error) {
	buf := make([]byte, 0, 512)
	for len(buf) < bodyLimit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), bodyLimit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), bodyLimit)])
		// Only the bytes read now, and len(want)-1 before them, can complete it.
		from := max(0, len(buf)-len(want)+1)
		buf = buf[:len(buf)+n]
		if strings.Contains(string(buf[from:]), want) {
			return buf, nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (c *httpChecker) statusOK(code int) bool {
	for _, r := range c.expect {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// classifyHTTP adds the HTTP client's own failures to classify's.
func classifyHTTP(err error) string {
	if cl := classify(err); cl != ClassError {
		return cl
	}
	s := err.Error()
	inner := err
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		inner = ue.Err
	}
	switch {
	case strings.Contains(s, "server gave HTTP response to HTTPS client"):
		return ClassTLS
	// The handshake's own failures are mostly untyped errors of crypto/tls ("tls: handshake
	// message of length … exceeds maximum", "tls: received unexpected handshake message…"),
	// which classify cannot tell from others.
	case strings.HasPrefix(inner.Error(), "tls: "):
		return ClassTLS
	case strings.Contains(s, "malformed HTTP"):
		return ClassProtocol
	case strings.Contains(s, "EOF"):
		return ClassClosed
	}
	return ClassError
}
