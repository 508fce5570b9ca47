package prober

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// handHTTP is a plain-HTTP GET or HEAD check that reads only the status, done without
// net/http's Transport: the request's bytes, written once when the check is built exactly as
// the Transport writes them (keep-alives off, so with "Connection: close"; a GET with
// "Accept-Encoding: gzip"), go out over the hand connect (connectOnly's), and the answer is read
// with http.ReadResponse through a pooled bufio.Reader, as the Transport reads it: the same
// 4 KiB buffer, the same 64 KiB bound on headers, 1xx answers skipped. Each check has a
// connection of its own, closed after the status, as the Transport closes it. Failures carry
// the Transport's error, word for word (TestHandHTTPMatchesTheTransport, FuzzHandHTTPMatchesTheTransport).
// The Transport does, per check, two goroutines, a dozen channels, the request's header map and
// its own connection bookkeeping; none of it is needed to read one status.
type handHTTP struct {
	req    []byte        // the request's bytes
	head   *http.Request // what http.ReadResponse needs of the request: its method
	method string        // for errors: "Head", as the Transport's client names it
	url    string
	base   *url.URL // the request's URL, against which the client parses a redirect's Location
}

// newHandHTTP prepares c's check by hand, or returns nil where the Transport must do it: TLS, a
// body to match, a method other than GET or HEAD, an address with an IPv6 zone (the hand
// connect has none), a header that changes what the Transport does (Connection,
// Accept-Encoding, Range…) or that it would refuse.
func newHandHTTP(c *httpChecker) *handHTTP {
	if c.https || c.contains != "" || (c.method != http.MethodGet && c.method != http.MethodHead) || c.dial.Addr().Zone() != "" {
		return nil
	}
	req, err := http.NewRequest(c.method, c.url, nil)
	if err != nil {
		return nil
	}
	host := req.URL.Host
	if c.host != "" {
		host = c.host
	}
	ruri := req.URL.RequestURI()
	if !plainHost(host) || hasCTL(ruri) {
		return nil
	}
	ua := c.headers.Get("User-Agent")
	if ua == "" || ua != strings.TrimSpace(ua) {
		return nil
	}
	for name, vs := range c.headers {
		if transportHeader[name] || !isToken(name) || len(vs) != 1 || hasCTL(vs[0]) {
			return nil
		}
	}
	var b strings.Builder
	b.WriteString(c.method + " " + ruri + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: " + ua + "\r\n")
	_ = c.headers.WriteSubset(&b, map[string]bool{"User-Agent": true})
	if c.method == http.MethodGet {
		b.WriteString("Accept-Encoding: gzip\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return &handHTTP{
		req:    []byte(b.String()),
		head:   &http.Request{Method: c.method},
		method: c.method[:1] + strings.ToLower(c.method[1:]),
		url:    req.URL.String(),
		base:   req.URL,
	}
}

// transportHeader lists the headers that change what the Transport writes or does.
var transportHeader = map[string]bool{
	"Host": true, "Connection": true, "Accept-Encoding": true, "Range": true, "Upgrade": true,
	"Expect": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true,
}

// plainHost reports whether a Host field's value is written as it is: ASCII letters, digits and
// the punctuation of names, addresses and ports, no zone.
func plainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]_", c) >= 0) {
			return false
		}
	}
	return true
}

// isToken reports whether s is an HTTP token (RFC 9110), as a field name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// hasCTL reports whether s holds a control byte other than a tab, or DEL.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// aLongTimeAgo is a deadline that has passed: setting it ends a wait at once.
var aLongTimeAgo = time.Unix(1, 0)

// httpConn is what a hand-made exchange needs of its connection.
type httpConn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// maxHeaderBytes bounds the answer's status line and headers, 1xx answers included: the
// Transport's MaxResponseHeaderBytes.
const maxHeaderBytes = 64 << 10

// limitedReader reads from a connection until limit bytes are read: the Transport's
// persistConn.Read while it reads headers.
type limitedReader struct {
	c     httpConn
	limit int64
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.limit <= 0 {
		return 0, fmt.Errorf("read limit of %d bytes exhausted", maxHeaderBytes)
	}
	if int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	n, err := r.c.Read(p)
	r.limit -= int64(n)
	return n, err
}

// reader is a pooled bufio.Reader with its limitedReader.
type reader struct {
	lr limitedReader
	br *bufio.Reader
}

var readers = sync.Pool{New: func() any {
	r := &reader{}
	r.br = bufio.NewReaderSize(&r.lr, 4<<10) // the Transport's read buffer
	return r
}}

// status runs the exchange and returns the final status code, or the error the Transport's
// client would have returned.
func (h *handHTTP) status(ctx context.Context, addr netip.AddrPort) (int, error) {
	code, err := h.exchange(ctx, addr)
	if err == nil {
		return code, nil
	}
	// The Transport ends a check whose context ended with the context's error, wherever it
	// was; the connection's deadline, the context's, may fire just before the context's timer.
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	} else if dl, ok := ctx.Deadline(); ok && (errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(dl)) {
		err = context.DeadlineExceeded
	}
	return 0, &url.Error{Op: h.method, URL: h.url, Err: err}
}

func (h *handHTTP) exchange(ctx context.Context, addr netip.AddrPort) (int, error) {
	c, err := dialHTTP(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return 0, err
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := c.Write(h.req); err != nil {
		return 0, err
	}
	r := readers.Get().(*reader)
	defer func() {
		r.lr.c = nil
		r.br.Reset(&r.lr)
		readers.Put(r)
	}()
	r.lr = limitedReader{c: c, limit: maxHeaderBytes}
	r.br.Reset(&r.lr)
	if _, err := r.br.Peek(1); err != nil {
		// Nothing of an answer: the Transport reports the read's own error.
		return 0, err
	}
	for {
		resp, err := http.ReadResponse(r.br, h.head)
		if err != nil {
			if r.lr.limit <= 0 {
				err = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxHeaderBytes)
			}
			return 0, fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", err)
		}
		// The Transport reads past 1xx answers, but for 101, within the same bound.
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		// The client follows no redirect, but parses its Location before it is told not to.
		switch resp.StatusCode {
		case 301, 302, 303, 307, 308:
			if loc := resp.Header.Get("Location"); loc != "" {
				if _, err := h.base.Parse(loc); err != nil {
					return 0, fmt.Errorf("failed to parse Location header %q: %v", loc, err)
				}
			}
		}
		return resp.StatusCode, nil
	}
}
