package proxy

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
)

// An instance's interim answers (1xx but 101, which is final: 103 Early Hints, a 100 Continue
// sent unasked, 102 Processing) reach the client before the final answer on every path, as
// httputil.ReverseProxy relays them, with two differences: their hop-by-hop fields are removed
// (RFC 9110 §7.6.1), as a final answer's are, and an HTTP/1.0 client gets none (RFC 9110 §15.2:
// a server must not send one to it; net/http's server would, with an HTTP/1.0 status line).
// The final answer must come within response_header, and its heads, interim ones included, may
// take maxResponseHead (10 MiB) in all, as net/http's Transport bounds them when its caller
// does not take the interim answers (and its HTTP/2 transport the interim ones alone): where
// the caller does, as ReverseProxy does, the limit starts over after each and their number is
// unbounded (its former bound of 5 went with go.dev/issue/65035), so an instance could have
// the edge parse and allocate 10 MiB after 10 MiB until response_header. Their number is not
// bounded apart: 10 MiB of small ones cost the edge what a body in as many chunks does, and
// an instance may send 102 Processing or 104 progress answers through a long wait.

// noBodyFields are the fields net/http's server leaves out of an interim answer's head.
var noBodyFields = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

// relayInterim writes the interim answer code with header h to w, the writer of the answer to
// r, as ReverseProxy does: net/http's server writes it at once, its fields sorted. w's header
// is empty until the final answer, so it holds h alone and is emptied again after.
func relayInterim(w http.ResponseWriter, r *http.Request, code int, h http.Header) {
	if !r.ProtoAtLeast(1, 1) {
		return
	}
	removeHop(h)
	dst := w.Header()
	for k, vs := range h {
		dst[k] = vs
	}
	w.WriteHeader(code)
	clear(dst)
}

// interimRelay relays the interim answers of one request on the ReverseProxy path in place of
// ReverseProxy, whose own relay (an httptrace.ClientTrace's Got1xxResponse) the edge's
// transport never sees (untraced). ReverseProxy writes an interim answer from the transport's
// reading goroutine while net/http's server may be writing, from the transport's writing
// goroutine, the 100 Continue it owes a client that expects one when the body is first read:
// the two writes share the connection's buffer unlocked (net/http's writeContinueMu guards
// only 100 Continue and final answers), and a client could get the bytes of one inside the
// other. Here both go through mu: the body's first read (bodyRead) writes the 100 Continue
// itself, which stops net/http from writing it.
type interimRelay struct {
	w http.ResponseWriter
	r *http.Request
	// owed is set while net/http's server owes the client a 100 Continue at the body's first
	// read: an HTTP/1.1 request with a body and Expect: 100-continue.
	owed bool
	mu   sync.Mutex
	// attempt is the attempt whose interim answers are relayed, -1 between attempts: a late
	// one of an attempt given up on is dropped. done is set once the final answer, or the
	// edge's own, may be written: nothing more is relayed.
	attempt int
	done    bool
	// sent is set once an interim answer reached the client.
	sent bool
}

type interimRelayKey struct{}

// withInterimRelay returns r with the relay of its interim answers to w in its context.
func withInterimRelay(w http.ResponseWriter, r *http.Request) *http.Request {
	ir := &interimRelay{w: w, r: r, owed: r.ProtoMajor == 1 && r.ProtoAtLeast(1, 1) && r.ContentLength != 0 &&
		hasToken(r.Header.Get("Expect"), "100-continue")}
	return r.WithContext(context.WithValue(r.Context(), interimRelayKey{}, ir))
}

// interimRelayOf returns the relay withInterimRelay put in ctx, or nil.
func interimRelayOf(ctx context.Context) *interimRelay {
	ir, _ := ctx.Value(interimRelayKey{}).(*interimRelay)
	return ir
}

// begin makes attempt i's interim answers the ones relayed.
func (ir *interimRelay) begin(i int) {
	if ir == nil {
		return
	}
	ir.mu.Lock()
	ir.attempt = i
	ir.mu.Unlock()
}

// over stops relaying attempt i's interim answers once the transport gave up on it (its
// RoundTrip returned): its reading goroutine may still hand on an interim answer it had read,
// which must neither reach the client nor, by reaching it, keep the request from the next
// target. Whether one reached the client before is settled here, under mu, before forward
// asks (replayable).
func (ir *interimRelay) over(i int) {
	if ir == nil {
		return
	}
	ir.mu.Lock()
	if ir.attempt == i {
		ir.attempt = -1
	}
	ir.mu.Unlock()
}

// end stops the relay: the final answer may be written.
func (ir *interimRelay) end() {
	if ir == nil {
		return
	}
	ir.mu.Lock()
	ir.done = true
	ir.mu.Unlock()
}

// relayed reports whether an interim answer reached the client.
func (ir *interimRelay) relayed() bool {
	if ir == nil {
		return false
	}
	ir.mu.Lock()
	defer ir.mu.Unlock()
	return ir.sent
}

// relay relays attempt i's interim answer code with header h, unless i was given up on or the
// final answer is under way.
func (ir *interimRelay) relay(i, code int, h http.Header) {
	if ir == nil {
		return
	}
	ir.mu.Lock()
	defer ir.mu.Unlock()
	if ir.done || i != ir.attempt || !ir.r.ProtoAtLeast(1, 1) {
		return
	}
	relayInterim(ir.w, ir.r, code, h)
	ir.sent = true
	if code == http.StatusContinue {
		ir.owed = false // net/http's server writes none after it
	}
}

// bodyRead is called before the body is first read: it writes the 100 Continue net/http's
// server would write then, the same bytes, as the client's next answer.
func (ir *interimRelay) bodyRead() {
	if ir == nil {
		return
	}
	ir.mu.Lock()
	defer ir.mu.Unlock()
	if ir.owed && !ir.done {
		ir.w.WriteHeader(http.StatusContinue)
		ir.owed = false
	}
}

// hasToken reports whether v, a field value, holds token, in any case, between commas or
// whitespace: net/http's test of an Expect field.
func hasToken(v, token string) bool {
	boundary := func(c byte) bool { return c == ' ' || c == ',' || c == '\t' }
	for i := 0; i+len(token) <= len(v); i++ {
		if (i == 0 || boundary(v[i-1])) && (i+len(token) == len(v) || boundary(v[i+len(token)])) && fold([]byte(v[i:i+len(token)]), token) {
			return true
		}
	}
	return false
}

// untraced is a context without the httptrace.ClientTrace ReverseProxy put in it to relay
// interim answers, which interimRelay relays instead.
type untraced struct{ context.Context }

func (c untraced) Value(key any) any {
	v := c.Context.Value(key)
	if _, ok := v.(*httptrace.ClientTrace); ok {
		return nil
	}
	return v
}

// relayTrace returns the trace of attempt i on the ReverseProxy path: it relays the attempt's
// interim answers through ir.
func relayTrace(ir *interimRelay, i int, gotConn func(httptrace.GotConnInfo)) *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn: gotConn,
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			ir.relay(i, code, http.Header(h))
			return nil
		},
	}
}

// interim writes an interim answer to the lean path's client, an HTTP/1.1 one, as relayInterim
// has net/http's server write it. From the first one on, the client is watched until the final
// answer's head arrives (lc.up's), which may take response_header: a client that leaves
// meanwhile ends the wait, as net/http's server cancels the request of a client gone.
func (lc *leanConn) interim(code int, h http.Header) {
	removeHop(h)
	lc.statusLine(code)
	_ = h.WriteSubset(lc.bw, noBodyFields)
	_, _ = lc.bw.WriteString("\r\n")
	lc.midAnswer = true
	_ = lc.bw.Flush()
	lc.relayed = true
	if lc.unwatch == nil {
		lc.unwatch = lc.watch(lc.up)
	}
}
