package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events/config"
	"golang.org/x/net/http/httpguts"
)

// The forwarding policy: the one place that decides, for every path a request takes through an
// edge (the lean GET path in front.go, the net/http paths in http.go and fast.go, and the TCP
// path in tcp.go), which header fields go upstream, when a request goes to the next target, which
// instance is skipped, and how long each wait may last.

// policy is an edge app's forwarding policy, fixed when the edge starts.
type policy struct {
	timeouts config.EdgeTimeouts
	// maxHeaderBytes bounds a request head.
	maxHeaderBytes int
	// underscores is underscores_in_headers: the request fields whose names hold an underscore
	// go upstream.
	underscores bool
	// onConnect and onTimeout are retry_on's connect_failure and timeout.
	onConnect, onTimeout bool
	// onStatus holds retry_on's statuses.
	onStatus map[int]bool
	// fall and cooldown are passive_fall and passive_cooldown.
	fall     int
	cooldown time.Duration
	// methods are the methods retried besides the idempotent ones.
	methods []string
}

func newPolicy(ea config.EdgeApp) *policy {
	p := &policy{timeouts: ea.Timeouts, maxHeaderBytes: ea.MaxHeaderBytes, underscores: ea.UnderscoresInHeaders, onStatus: map[int]bool{},
		fall: max(ea.PassiveFall, 1), cooldown: ea.PassiveCooldown.D()}
	for _, v := range ea.RetryOn {
		switch v {
		case config.RetryOnConnectFailure:
			p.onConnect = true
		case config.RetryOnTimeout:
			p.onTimeout = true
		default:
			if code, err := strconv.Atoi(v); err == nil {
				p.onStatus[code] = true
			}
		}
	}
	for _, m := range ea.RetryMethods {
		p.methods = append(p.methods, strings.ToUpper(m))
	}
	return p
}

// retriable returns the methods a request of the route may be sent twice with: the idempotent
// ones that net/http's Transport replays (GET, HEAD, OPTIONS, TRACE) and retry_methods, from the
// edge's configuration and from the route table.
func (p *policy) retriable(routeMethods []string) map[string]bool {
	out := map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "TRACE": true}
	for _, m := range p.methods {
		out[m] = true
	}
	for _, m := range routeMethods {
		out[strings.ToUpper(m)] = true
	}
	return out
}

// maxAttempts bounds the targets one request or connection is sent to.
const maxAttempts = 3

// failure is how an attempt on one target failed.
type failure int

const (
	// notSent: the connection could not be made; nothing reached the target.
	notSent failure = iota + 1
	// noAnswer: the connection broke before any byte of an answer was read.
	noAnswer
	// timedOut: response_header expired before the answer's head was read.
	timedOut
	// badStatus: the answer's status is one of retry_on's.
	badStatus
	// broken: anything else (a malformed answer, a client gone away): never retried.
	broken
)

// classify says how err, the error of one attempt, failed.
func classify(err error) failure {
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return notSent
	case errors.As(err, new(*statusError)):
		return badStatus
	case errors.Is(err, errHeaderTimeout), errors.As(err, &ne) && ne.Timeout():
		return timedOut
	case errors.Is(err, errIdleClosed), closedByPeer(err):
		return noAnswer
	default:
		return broken
	}
}

// next reports whether a request with method, whose attempt failed as f, goes to the next
// target. Nothing sent is always safe to send elsewhere. Otherwise the method must be retriable
// (never POST unless listed) and the body replayable (none, or none of it read yet); a timeout
// and a status also need retry_on to name them.
func (p *policy) next(f failure, retriable, replayable bool) bool {
	switch f {
	case notSent:
		return p.onConnect
	case noAnswer:
		return p.onConnect && retriable && replayable
	case timedOut:
		return p.onTimeout && retriable && replayable
	case badStatus:
		return retriable && replayable
	default:
		return false
	}
}

// retryStatus reports whether an answer with code from a local instance is retry_on's.
func (p *policy) retryStatus(code int) bool { return p.onStatus[code] }

// errHeaderTimeout is the error of an attempt whose answer's head did not arrive in time.
var errHeaderTimeout = errors.New("no answer within the response_header timeout")

// errLoop is the reason a request forwarded by another edge fails when the local pool cannot
// take it either.
var errLoop = errors.New("the local pool is down and the request was already forwarded by another edge: not forwarding it again")

// errClientGone ends an attempt on the lean path whose client left while the answer was on its way.
var errClientGone = errors.New("the client left while the answer was on its way")

// errNoTarget is the reason a request fails when the route offers nowhere to send it.
var errNoTarget = errors.New("no instance and no secondary edge to send the request to")

// hopByHop are the fields meaningful for one connection only (RFC 9110 §7.6.1), in canonical
// form: never forwarded, in either direction.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// isHop holds the fields of a request that never go upstream as the client sent them, in
// canonical form: hopByHop, Content-Length, which the edge writes from the body it actually
// forwards (RFC 9112 §6), Host, written first, and those the edge sets itself. Fields a
// Connection field names are dropped too (connectionListed).
var isHop = func() map[string]bool {
	m := map[string]bool{"Content-Length": true, "Host": true, "X-Forwarded-For": true,
		"X-Forwarded-Host": true, "X-Forwarded-Proto": true, "Forwarded": true,
		HeaderForwardedBy: true, HeaderPing: true, "Http2-Settings": true}
	for _, k := range hopByHop {
		m[k] = true
	}
	return m
}()

// isHopByHop reports whether name, in any case, is one of hopByHop.
func isHopByHop(name []byte) bool {
	for _, k := range hopByHop {
		if fold(name, k) {
			return true
		}
	}
	return false
}

// connectionListed returns the canonical names the Connection fields of h list, or nil.
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

// removeHop deletes from an answer's header the hop-by-hop fields, including those the
// Connection field names, which it returns; the framing fields stay, net/http rewrites them
// from the body.
func removeHop(h http.Header) (listed map[string]bool) {
	listed = connectionListed(h)
	for k := range listed {
		delete(h, k)
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	return listed
}

// upstreamHeader returns the fields of in's header that go upstream, the forwarding fields of f
// and, towards a secondary edge, the hop field naming this edge; a field whose name holds an
// underscore only when underscores is set (see dropped). An upgrade is carried by net/http's
// ReverseProxy, which rewrite lets add its Upgrade and Connection back.
func upstreamHeader(in http.Header, f *forwarding, hop string, underscores bool) http.Header {
	listed := connectionListed(in)
	out := make(http.Header, len(in)+5)
	for k, vs := range in {
		if isHop[k] || listed[k] || dropped(k, underscores) {
			continue
		}
		out[k] = vs
	}
	// As ReverseProxy does: the token trailers, not a field that holds the word.
	if httpguts.HeaderValuesContainsToken(in["Te"], "trailers") {
		out["Te"] = []string{"trailers"}
	}
	for i, v := range f.values() {
		out[forwardingHeaders[i]] = []string{v}
	}
	if hop != "" {
		out[HeaderForwardedBy] = []string{hop}
	}
	return out
}

// dropped reports whether a request field named name stays out of the request upstream for
// holding an underscore, unless underscores (underscores_in_headers) lets it through: a gateway
// that folds '-' and '_' into one variable (CGI's HTTP_X_FORWARDED_FOR) would take a client's
// X_Forwarded_For for the X-Forwarded-For the edge sets. nginx drops them too.
func dropped[S string | []byte](name S, underscores bool) bool {
	if underscores {
		return false
	}
	for i := range len(name) {
		if name[i] == '_' {
			return true
		}
	}
	return false
}

// withDeadline runs op with c's deadline set d from now when d > 0, and clears it after.
func withDeadline(c net.Conn, d time.Duration, op func() error) error {
	if d <= 0 {
		return op()
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	err := op()
	_ = c.SetReadDeadline(time.Time{})
	return err
}

// headerTimeout turns a read error caused by the response_header deadline into errHeaderTimeout.
func headerTimeout(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errHeaderTimeout) {
		return errHeaderTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errHeaderTimeout
	}
	return err
}
