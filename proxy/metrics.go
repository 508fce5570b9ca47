package proxy

import (
	"net/http"
	"time"

	"github.com/detourdev/detour/events/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Targets of a request, as the metrics label them.
const (
	targetLocal     = "local"
	targetSecondary = "secondary"
	targetNone      = "none"
)

// appMetrics are one app's collectors on one edge, looked up once. A nil *appMetrics records
// nothing.
type appMetrics struct {
	m                    *metrics.Metrics
	edge, app            string
	upLocal, upSecondary prometheus.Observer
	retries, forwards    prometheus.Counter
	ejections            prometheus.Counter
	bodyTimeouts         prometheus.Counter
	// refusedPerClient counts the connections refused over max_conns_per_client.
	refusedPerClient prometheus.Counter
}

func newAppMetrics(m *metrics.Metrics, edge, app string) *appMetrics {
	if m == nil {
		return nil
	}
	return &appMetrics{
		m: m, edge: edge, app: app,
		upLocal:          m.EdgeUpstreamDuration.WithLabelValues(edge, app, targetLocal),
		upSecondary:      m.EdgeUpstreamDuration.WithLabelValues(edge, app, targetSecondary),
		retries:          m.EdgeRetries.WithLabelValues(edge, app),
		forwards:         m.EdgeSecondaryForwards.WithLabelValues(edge, app),
		ejections:        m.EdgeEjections.WithLabelValues(edge, app),
		bodyTimeouts:     m.EdgeTimeouts.WithLabelValues(edge, app, timeoutResponseBody),
		refusedPerClient: m.EdgeConnectionsRefused.WithLabelValues(edge, app, limitPerClient),
	}
}

// start returns the time an attempt starts, or zero when nothing is recorded.
func (am *appMetrics) start() time.Time {
	if am == nil {
		return time.Time{}
	}
	return time.Now()
}

// attempted records the attempt number i (0: the first) to a target, started at start, that
// received a response head with status code, or none (code 0).
func (am *appMetrics) attempted(i int, secondary bool, start time.Time, code int) {
	if am == nil {
		return
	}
	if i > 0 {
		am.retries.Inc()
	}
	target, up := targetLocal, am.upLocal
	if secondary {
		target, up = targetSecondary, am.upSecondary
		am.forwards.Inc()
	}
	if code != 0 {
		up.Observe(time.Since(start).Seconds())
		am.m.EdgeRequests.WithLabelValues(am.edge, am.app, metrics.StatusClass(code), target).Inc()
	}
}

// failed records a request the edge answered itself with 502.
func (am *appMetrics) failed() {
	if am == nil {
		return
	}
	am.m.EdgeRequests.WithLabelValues(am.edge, am.app, metrics.StatusClass(http.StatusBadGateway), targetNone).Inc()
}

// ejected records a local instance taken out of rotation.
func (am *appMetrics) ejected() {
	if am == nil {
		return
	}
	am.ejections.Inc()
}

// bodyTimedOut records an answer cut mid-way for response_body.
func (am *appMetrics) bodyTimedOut() {
	if am == nil {
		return
	}
	am.bodyTimeouts.Inc()
}

// refusedConn records a connection refused over max_conns_per_client.
func (am *appMetrics) refusedConn() {
	if am == nil {
		return
	}
	am.refusedPerClient.Inc()
}
