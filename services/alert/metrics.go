package alert

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/metrics"
)

// Reasons of an attempt recorded failed or abandoned, as detour_alert_attempts_total labels
// them beside the status classes (3xx, 4xx, 5xx) of one answered: a few, whatever the webhook,
// and never its URL, which may hold its credential.
const (
	reasonTimeout = "timeout" // no answer within the attempt's timeout
	reasonConnect = "connect" // no connection: refused, unreachable, the host not resolved
	reasonTLS     = "tls"     // the certificate's verification failed, or the server refused the handshake
	reasonError   = "error"   // anything else; the attempt's error says what
	// Abandoned unsent.
	reasonSuperseded = "superseded" // a later alert of its subject was delivered to the webhook
	reasonQueueFull  = "queue_full" // maxQueued deliveries to the webhook were in flight
)

// attemptSeries are the result and reason of every attempt series an alert group shows from
// its start (metrics.AlertGroup).
var attemptSeries = func() [][2]string {
	sent := []string{"3xx", "4xx", "5xx", reasonTimeout, reasonConnect, reasonTLS, reasonError}
	out := [][2]string{{events.AlertDelivered, ""}}
	for _, reason := range sent {
		out = append(out, [2]string{events.AlertFailed, reason}, [2]string{events.AlertAbandoned, reason})
	}
	return append(out, [2]string{events.AlertAbandoned, reasonSuperseded}, [2]string{events.AlertAbandoned, reasonQueueFull})
}()

// attemptReason is the reason of an attempt sent that came back with status code (0: none) and
// err (nil: the webhook accepted it, the reason is "").
func attemptReason(code int, err error) string {
	if err == nil {
		return ""
	}
	if code != 0 {
		return metrics.StatusClass(code)
	}
	var (
		netErr  net.Error
		opErr   *net.OpError
		certErr *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return reasonTimeout
	// crypto/tls returns an alert the webhook sent (it refused the handshake: a client
	// certificate asked for, no common version) as the operation "remote error".
	case errors.As(err, &certErr), errors.As(err, &opErr) && opErr.Op == "remote error":
		return reasonTLS
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return reasonConnect
	}
	return reasonError
}
