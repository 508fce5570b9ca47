package prober

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// Error classes: short, stable words a result carries when a check fails.
const (
	ClassTimeout     = "timeout"     // no answer within the check's timeout
	ClassRefused     = "refused"     // the port is closed (TCP RST or ICMP port unreachable)
	ClassReset       = "reset"       // the peer reset an established connection
	ClassUnreachable = "unreachable" // no route to the host or network
	ClassClosed      = "closed"      // the peer closed the connection before answering
	ClassTLS         = "tls"         // handshake or certificate verification failed
	ClassStatus      = "status"      // an HTTP status outside the expected ranges
	ClassBody        = "body"        // the body lacks the expected string
	ClassExpect      = "expect"      // a tcp check read something other than expect
	ClassDNS         = "dns"         // a DNS answer with the wrong rcode or without the expected data
	ClassProtocol    = "protocol"    // the peer answered with something that is not the protocol
	ClassPermission  = "permission"  // the prober may not open the socket (icmp)
	ClassError       = "error"       // anything else; the result's error says what
)

// bodyLimit is how much of an HTTP body a body_contains check reads.
const bodyLimit = 5120

// Target is one endpoint checked with its app's check.
type Target struct {
	App      string
	Pool     string
	Endpoint string
	// Address is the endpoint's ip:port, or bare IP, from the configuration.
	Address string
	// Dial is the ip:port the check connects to: Address with the check's port, if it sets one.
	Dial  netip.AddrPort
	Check config.Check
}

// Key identifies the target within a region: "app/pool/endpoint". Sharding and scheduling hash it.
func (t Target) Key() string { return t.App + "/" + t.Pool + "/" + t.Endpoint }

// Targets lists every endpoint of every app of a validated configuration with its check.
func Targets(c *config.Config) []Target {
	var ts []Target
	for _, a := range c.Apps {
		for _, p := range a.Pools {
			for i := range p.Endpoints {
				e := &p.Endpoints[i]
				dial := e.AddrPort()
				if a.Check.Port != 0 {
					dial = netip.AddrPortFrom(dial.Addr(), uint16(a.Check.Port))
				}
				ts = append(ts, Target{App: a.Name, Pool: p.Name, Endpoint: e.Name, Address: e.Address, Dial: dial, Check: a.Check})
			}
		}
	}
	return append(ts, edgeTargets(c)...)
}

// edgeTargets lists every edge app listener as endpoint <edge> of pool events.EdgeProbePool of
// its app, checked at the app's interval and thresholds: an HTTP listener must answer the
// edge's own ping (HEAD / with Detour-Edge-Ping, answered 204 by the edge itself, whatever its
// pool's state), a TCP listener must accept a connection. The controller folds these results
// into the edge's liveness with its heartbeats.
func edgeTargets(c *config.Config) []Target {
	var ts []Target
	for _, e := range c.Edges {
		for _, ea := range e.Apps {
			a := c.App(ea.App)
			dial, err := netip.ParseAddrPort(ea.Listen)
			if a == nil || err != nil {
				continue
			}
			k := config.Check{Type: config.CheckTCP, Interval: a.Check.Interval, Timeout: a.Check.Timeout,
				Jitter: a.Check.Jitter, Fall: a.Check.Fall, Rise: a.Check.Rise, StaleAfter: a.Check.StaleAfter}
			if ea.Mode == config.ModeHTTP {
				k.Type, k.Method, k.Path, k.ExpectStatus = config.CheckHTTP, "HEAD", "/", []string{"204"}
				k.Headers = map[string]string{"Detour-Edge-Ping": "prober"}
			}
			ts = append(ts, Target{App: ea.App, Pool: events.EdgeProbePool, Endpoint: e.Name, Address: ea.Listen, Dial: dial, Check: k})
		}
	}
	return ts
}

// Outcome is what one run of a check found.
type Outcome struct {
	OK      bool
	Latency time.Duration
	// Class is one of the Class* constants when OK is false.
	Class string
	// Err describes the failure for a person.
	Err            string
	HTTPStatus     int
	CertExpiryDays *float64
}

func failure(class string, err error) Outcome {
	return Outcome{Class: class, Err: err.Error()}
}

// checker runs one target's check. Implementations are safe for concurrent use.
type checker interface {
	run(ctx context.Context) Outcome
}

// newChecker prepares the check of t, with the files it reads from files (one configuration's);
// the error names what in the check cannot be run.
func newChecker(t Target, shared *sharedTransports, files *checkFiles) (checker, error) {
	switch t.Check.Type {
	case config.CheckHTTP, config.CheckHTTPS:
		return newHTTPChecker(t, shared, files)
	case config.CheckTCP:
		return newTCPChecker(t, files)
	case config.CheckICMP:
		return newICMPChecker(t), nil
	case config.CheckDNS:
		return newDNSChecker(t)
	}
	return nil, fmt.Errorf("check.type: unknown check type %q", t.Check.Type)
}

// Probe runs t's check once, bounded by the check's timeout, and reports what it found: the
// single-shot form of what a worker does on every interval, reading files only in dirs.
func Probe(ctx context.Context, t Target, dirs config.CredentialDirs) Outcome {
	c, err := newChecker(t, newSharedTransports(), newCheckFiles(time.Now, zerolog.Nop(), config.FileRecheck, dirs))
	if err != nil {
		return failure(ClassError, err)
	}
	return timed(ctx, c, t.Check.Timeout.D(), time.Now)
}

// timed runs c under the timeout and stamps the latency from now.
func timed(ctx context.Context, c checker, timeout time.Duration, now func() time.Time) Outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := now()
	o := c.run(ctx)
	o.Latency = now().Sub(start)
	if !o.OK && o.Class == "" {
		o.Class = ClassError
	}
	o.Err = clipError(o.Err)
	return o
}

// maxErrorJSON bounds a result's error as JSON writes it (appendString). A peer's answer finds
// its way into errors (net/http quotes the status or header line it could not read, up to 64
// KiB), and a few results that large took their batch past PROBES' bound on a message, losing
// every result in it. Bounded, a result with names of usual length takes under 800 bytes, and
// a batch of maxBatch of them fits.
const maxErrorJSON = 512

// clipError cuts s, at a character, to what JSON writes in maxErrorJSON bytes, marked with "…".
func clipError(s string) string {
	n, cut := 0, len(s)
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			n += len(`\ufffd`)
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
			n += 2
		case r < ' ':
			n += len(`\u0000`)
		default:
			n += utf8.RuneLen(r)
		}
		if cut == len(s) && n > maxErrorJSON-len("…") {
			cut = i
		}
		if n > maxErrorJSON {
			return s[:cut] + "…"
		}
	}
	return s
}

// isAny reports whether err is one of targets.
func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// classify maps an error from the network stack to a class.
func classify(err error) string {
	var (
		netErr      net.Error
		certErr     *tls.CertificateVerificationError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		recordErr   tls.RecordHeaderError
		alertErr    tls.AlertError
		echErr      *tls.ECHRejectionError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ClassTimeout
	case isAny(err, refusedErrnos):
		return ClassRefused
	case isAny(err, resetErrnos):
		return ClassReset
	case isAny(err, unreachableErrnos):
		return ClassUnreachable
	case isAny(err, permissionErrnos):
		return ClassPermission
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr),
		errors.As(err, &invalidErr), errors.As(err, &recordErr), errors.As(err, &alertErr), errors.As(err, &echErr):
		return ClassTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassClosed
	case errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	}
	return ClassError
}

// hostPort formats an address for a dial (urlHostPort, for a URL).
func hostPort(ap netip.AddrPort) string {
	return net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port())))
}
