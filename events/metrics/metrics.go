package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the collectors of one process. Every method is safe on a nil *Metrics, so a role
// run without metrics needs no branches.
type Metrics struct {
	// Registry holds every collector below and the Go runtime's.
	Registry *prometheus.Registry

	// Prober.
	Probes        *prometheus.CounterVec
	CheckDuration *prometheus.HistogramVec

	// Decider and controller.
	Transitions *prometheus.CounterVec
	Failover    prometheus.Observer
	EdgeChecks  *prometheus.CounterVec

	// DNS server.
	DNSQueries        *prometheus.CounterVec
	DNSAnswerDuration prometheus.Observer
	ZoneSerial        *prometheus.GaugeVec
	Notifies          *prometheus.CounterVec
	Pushes            *prometheus.CounterVec
	// DNSTransfersRefused counts the signed transfer requests refused before the zone, by
	// reason: replay (a copy of one served) or full (its key's share of the replay cache is).
	DNSTransfersRefused *prometheus.CounterVec

	// Edge proxies.
	EdgeRequests          *prometheus.CounterVec
	EdgeUpstreamDuration  *prometheus.HistogramVec
	EdgeRetries           *prometheus.CounterVec
	EdgeSecondaryForwards *prometheus.CounterVec
	EdgeEjections         *prometheus.CounterVec
	// EdgeTimeouts counts the answers an edge cut because a timeout of its app expired once
	// they had started (response_body), by edge, app and timeout.
	EdgeTimeouts *prometheus.CounterVec
	// EdgeConnectionsRefused counts the client connections an edge listener closed as soon as
	// it accepted them, over its app's max_conns_per_client, by edge, app and reason
	// (max_conns_per_client).
	EdgeConnectionsRefused *prometheus.CounterVec

	// Alert sender (controller).
	AlertAttempts        *prometheus.CounterVec
	AlertAttemptDuration *prometheus.HistogramVec

	// Every follower of a stream.
	ConsumerLag    *prometheus.GaugeVec
	DecodeFailures *prometheus.CounterVec
}

// latencyBuckets span 50 µs to 10 s, for checks, answers and upstream requests.
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// failoverBuckets span 10 ms to 5 min: from sub-second probes to Route 53's 90 s.
var failoverBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New returns the collectors, registered on a new registry with the Go runtime's and the
// process's collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{r}
	return &Metrics{
		Registry: r,
		Probes: f.counter("detour_probes_total",
			"Health checks completed, by app, probing region and result class (ok, or the error class: timeout, refused, status, …).",
			"app", "region", "result"),
		CheckDuration: f.histogram("detour_check_duration_seconds",
			"How long one health check took, by app and probing region.", latencyBuckets, "app", "region"),
		Transitions: f.counter("detour_transitions_total",
			"Transitions this process appended to STATE, by kind (endpoint, pool, edge) and the status entered.",
			"kind", "to"),
		Failover: f.histogram("detour_failover_seconds",
			"Time from the first failed probe of the streak that took an endpoint down to that down transition being appended. Down transitions an override, a drill or staleness made are not observed.", failoverBuckets).
			WithLabelValues(),
		EdgeChecks: f.counter("detour_edge_checks_total",
			"Results of the probers' checks of edge listeners a controller recorded, by probing region.", "region"),
		DNSQueries: f.counter("detour_dns_queries_total",
			"DNS queries answered, by response code and query type.", "rcode", "type"),
		DNSAnswerDuration: f.histogram("detour_dns_answer_duration_seconds",
			"Time to build one DNS reply, from the packet to the reply bytes (one reply in 64 is timed).", latencyBuckets).WithLabelValues(),
		ZoneSerial: f.gauge("detour_dns_zone_serial",
			"The SOA serial a DNS server serves, by zone.", "zone"),
		Notifies: f.counter("detour_dns_notifies_total",
			"NOTIFY messages sent to secondaries, by zone and outcome (ok, failed).", "zone", "result"),
		Pushes: f.counter("detour_dns_pushes_total",
			"RFC 2136 pushes to a primary, by zone and outcome (ok, failed, behind: held back, the primary holding a later state).", "zone", "result"),
		DNSTransfersRefused: f.counter("detour_dns_transfers_refused_total",
			"Signed zone transfer requests refused with nothing of the zone, by reason: replay (NOTAUTH/BADTIME to a copy of one served), full (SERVFAIL: the key's share of the replay cache is full).", "reason"),
		EdgeRequests: f.counter("detour_edge_requests_total",
			"Requests an edge answered, by edge, app, status code class (2xx…5xx) and target (local, secondary, none).",
			"edge", "app", "status", "target"),
		EdgeUpstreamDuration: f.histogram("detour_edge_upstream_duration_seconds",
			"Time from forwarding a request to the response head, by edge, app and target (local, secondary).",
			latencyBuckets, "edge", "app", "target"),
		EdgeRetries: f.counter("detour_edge_retries_total",
			"Requests an edge retried on another target after a connection error, by edge and app.", "edge", "app"),
		EdgeSecondaryForwards: f.counter("detour_edge_secondary_forwards_total",
			"Requests an edge forwarded to its secondary edge, by edge and app.", "edge", "app"),
		EdgeEjections: f.counter("detour_edge_ejections_total",
			"Times an edge took a local instance out of rotation for passive_cooldown after failed requests, by edge and app.",
			"edge", "app"),
		EdgeTimeouts: f.counter("detour_edge_timeouts_total",
			"Answers an edge cut mid-way because a timeout expired (response_body: an instance sent nothing of its answer's body for that long), by edge, app and timeout.",
			"edge", "app", "timeout"),
		EdgeConnectionsRefused: f.counter("detour_edge_connections_refused_total",
			"Client connections an edge listener closed as soon as it accepted them, over a limit of its app (max_conns_per_client: the client's; at max_conns a listener stops accepting instead), by edge, app and reason.",
			"edge", "app", "reason"),
		AlertAttempts: f.counter("detour_alert_attempts_total",
			"Attempts of alert deliveries this process recorded on ALERTS, by alert group, result (delivered, failed: retried later, abandoned: never retried) and reason (\"\" for delivered; 3xx, 4xx, 5xx, timeout, connect, tls, error for an attempt sent; superseded, queue_full for one not sent).",
			"group", "result", "reason"),
		AlertAttemptDuration: f.histogram("detour_alert_attempt_duration_seconds",
			"Time one attempt sent to an alert webhook took, from the request to the answer read or the failure, by alert group.",
			latencyBuckets, "group"),
		ConsumerLag: f.gauge("detour_consumer_lag_messages",
			"Messages of a stream a follower has not processed yet, by consumer and stream.", "consumer", "stream"),
		DecodeFailures: f.counter("detour_decode_failures_total",
			"Messages a follower could not decode and skipped, by consumer and stream.", "consumer", "stream"),
	}
}

type factory struct{ r prometheus.Registerer }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.r.MustRegister(h)
	return h
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ProbeSeries is one check's probe counters and check-duration histogram from one region,
// each looked up by its label values once, where a lookup on every result hashes and compares
// them (1–3 µs a result, at thousands of results a second). A series appears on its first
// result, as with a lookup. Not safe for concurrent use: one check's results come one at a
// time.
type ProbeSeries struct {
	m           *Metrics
	app, region string
	ok          prometheus.Counter
	duration    prometheus.Observer
	// failed is the result of the last failure, counted by failedCount.
	failed      string
	failedCount prometheus.Counter
}

// ProbeSeries returns the series of app's checks from region; nil, which counts nothing, when m
// is nil.
func (m *Metrics) ProbeSeries(app, region string) *ProbeSeries {
	if m == nil {
		return nil
	}
	return &ProbeSeries{m: m, app: app, region: region}
}

// Probe counts one probe: result is "ok" or the failure's class.
func (s *ProbeSeries) Probe(result string, seconds float64) {
	if s == nil {
		return
	}
	var c prometheus.Counter
	switch {
	case result == "ok":
		if s.ok == nil {
			s.ok = s.m.Probes.WithLabelValues(s.app, s.region, result)
		}
		c = s.ok
	case result == s.failed && s.failedCount != nil:
		c = s.failedCount
	default:
		s.failed, s.failedCount = result, s.m.Probes.WithLabelValues(s.app, s.region, result)
		c = s.failedCount
	}
	c.Inc()
	if s.duration == nil {
		s.duration = s.m.CheckDuration.WithLabelValues(s.app, s.region)
	}
	s.duration.Observe(seconds)
}

// Transition counts one appended transition of kind (endpoint, pool, edge).
func (m *Metrics) Transition(kind, to string) {
	if m == nil {
		return
	}
	m.Transitions.WithLabelValues(kind, to).Inc()
}

// FailedOver records the time from the first failed probe of the streak that took an endpoint down
// to its down transition being appended.
func (m *Metrics) FailedOver(seconds float64) {
	if m == nil {
		return
	}
	m.Failover.Observe(seconds)
}

// Serial records the serial served for zone.
func (m *Metrics) Serial(zone string, serial uint32) {
	if m == nil {
		return
	}
	m.ZoneSerial.WithLabelValues(zone).Set(float64(serial))
}

// Notified counts one NOTIFY to a secondary of zone.
func (m *Metrics) Notified(zone string, err error) {
	if m == nil {
		return
	}
	m.Notifies.WithLabelValues(zone, outcome(err)).Inc()
}

// Pushed counts one RFC 2136 push of zone.
func (m *Metrics) Pushed(zone string, err error) {
	if m == nil {
		return
	}
	m.Pushes.WithLabelValues(zone, outcome(err)).Inc()
}

// PushBehind counts one push of zone held back because the primary holds a later state.
func (m *Metrics) PushBehind(zone string) {
	if m == nil {
		return
	}
	m.Pushes.WithLabelValues(zone, "behind").Inc()
}

// TransferRefused counts one signed transfer request refused for reason (replay, full).
func (m *Metrics) TransferRefused(reason string) {
	if m == nil {
		return
	}
	m.DNSTransfersRefused.WithLabelValues(reason).Inc()
}

// Lag records how many messages of stream the consumer has still to process.
func (m *Metrics) Lag(consumer, stream string, pending uint64) {
	if m == nil {
		return
	}
	m.ConsumerLag.WithLabelValues(consumer, stream).Set(float64(pending))
}

// EdgeChecked counts n results of checks of edge listeners from region that a controller recorded.
func (m *Metrics) EdgeChecked(region string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.EdgeChecks.WithLabelValues(region).Add(float64(n))
}

// AlertGroup shows the attempt series of the alert group, one for each result and reason pair
// of series, and its duration histogram, at zero until their first count: a series that appears
// at 1 shows no increase, and a rule on increase() would miss the group's first abandoned alert.
func (m *Metrics) AlertGroup(group string, series [][2]string) {
	if m == nil {
		return
	}
	for _, s := range series {
		m.AlertAttempts.WithLabelValues(group, s[0], s[1])
	}
	m.AlertAttemptDuration.WithLabelValues(group)
}

// AlertGroupGone drops every series of the alert group, which a configuration version removed:
// the series of the groups a process was ever given would stay until it restarts.
func (m *Metrics) AlertGroupGone(group string) {
	if m == nil {
		return
	}
	m.AlertAttempts.DeletePartialMatch(prometheus.Labels{"group": group})
	m.AlertAttemptDuration.DeletePartialMatch(prometheus.Labels{"group": group})
}

// AlertAttempted counts one attempt of a delivery to a webhook of the alert group, recorded on
// ALERTS with result, for reason.
func (m *Metrics) AlertAttempted(group, result, reason string) {
	if m == nil {
		return
	}
	m.AlertAttempts.WithLabelValues(group, result, reason).Inc()
}

// AlertSent records how long one attempt sent to a webhook of the alert group took.
func (m *Metrics) AlertSent(group string, seconds float64) {
	if m == nil {
		return
	}
	m.AlertAttemptDuration.WithLabelValues(group).Observe(seconds)
}

// DecodeFailed counts one message of stream the consumer skipped as undecodable.
func (m *Metrics) DecodeFailed(consumer, stream string) {
	if m == nil {
		return
	}
	m.DecodeFailures.WithLabelValues(consumer, stream).Inc()
}

// StatusClass is "2xx" for 200 to 299 and so on; "error" for a request answered by no status.
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return "error"
	}
	return strconv.Itoa(code/100) + "xx"
}

func outcome(err error) string {
	if err != nil {
		return "failed"
	}
	return "ok"
}

// Serve answers GET /metrics on addr until ctx ends, and returns the address it bound (addr
// with port 0 takes a free port).
func (m *Metrics) Serve(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return ln.Addr().String(), nil
}
