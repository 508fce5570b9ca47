package events

import "time"

// Event types. The version is part of the name; facts are in the past tense or name the state
// that was entered.
const (
	// TypeProbeCompleted carries one ProbeResult.
	TypeProbeCompleted = "detour.probe.completed.v1"
	// TypeProbeBatchCompleted carries a ProbeBatch: every result one prober produced in one tick.
	TypeProbeBatchCompleted = "detour.probe.batch_completed.v1"

	// TypeEndpointUp, TypeEndpointDown and TypeEndpointDrained carry a Transition of an endpoint.
	TypeEndpointUp      = "detour.endpoint.up.v1"
	TypeEndpointDown    = "detour.endpoint.down.v1"
	TypeEndpointDrained = "detour.endpoint.drained.v1"
	// TypePoolUp and TypePoolDown carry a Transition of a pool.
	TypePoolUp   = "detour.pool.up.v1"
	TypePoolDown = "detour.pool.down.v1"
	// TypeEdgeUp and TypeEdgeDown carry a Transition of an edge proxy.
	TypeEdgeUp   = "detour.edge.up.v1"
	TypeEdgeDown = "detour.edge.down.v1"

	// TypeHoldDownStarted and TypeHoldDownCancelled carry a HoldDown on an endpoint's
	// HoldDownSubject: a down endpoint's regions turned healthy while its app has a hold_down (the
	// event's time is when, its cause the result that made it), or turned unhealthy again before
	// the hold-down ended. They record no status: a starting decider reads the last of them to
	// resume a hold-down under way from when it began; every other reader skips them.
	TypeHoldDownStarted   = "detour.endpoint.hold_down_started.v1"
	TypeHoldDownCancelled = "detour.endpoint.hold_down_cancelled.v1"

	// TypeOverrideSet and TypeOverrideCleared carry an Override made by an operator.
	TypeOverrideSet     = "detour.override.set.v1"
	TypeOverrideCleared = "detour.override.cleared.v1"

	// TypeConfigApplied carries a ConfigApplied: the whole desired configuration.
	TypeConfigApplied = "detour.config.applied.v1"
	// TypeConfigRejected carries a config.Rejected: a role could not apply a version.
	TypeConfigRejected = "detour.config.rejected.v1"

	// TypeAlertAttempted carries an AlertAttempt: one try at delivering an alert to a webhook.
	TypeAlertAttempted = "detour.alert.attempted.v1"
	// TypeAlertClaimed carries an AlertClaim: a sender takes one attempt of a delivery, so that
	// the other controllers' senders do not make it too.
	TypeAlertClaimed = "detour.alert.claimed.v1"

	// TypeZoneChanged carries a ZoneChanged: a new serial of a served zone.
	TypeZoneChanged = "detour.dns.zone_changed.v1"
)

// Status is the health of an endpoint, pool or edge.
type Status string

// The statuses. Unknown is the status before any decision was made.
const (
	StatusUnknown Status = ""
	StatusUp      Status = "up"
	StatusDown    Status = "down"
	StatusDrained Status = "drained"
)

// ProbeResult is the outcome of one health check of one endpoint from one region.
type ProbeResult struct {
	// ID identifies the result; inside a batch it is "<batch id>/<index>".
	ID       string    `json:"id,omitempty"`
	At       time.Time `json:"at"`
	App      string    `json:"app"`
	Pool     string    `json:"pool"`
	Endpoint string    `json:"endpoint"`
	Address  string    `json:"address"`
	Region   string    `json:"region"`
	Prober   string    `json:"prober"`
	Check    string    `json:"check"`
	// Window is the number of the check's interval window the result is from, counted from the
	// Unix epoch (the window that starts at window × interval). Two results of one region for
	// one endpoint and window are one check that two probers of the region ran during a
	// hand-over, and count once. 0: not said (results published before it was).
	Window int64 `json:"window,omitempty"`
	OK     bool  `json:"ok"`
	// LatencyMicros is how long the check took, in microseconds.
	LatencyMicros int64 `json:"latency_us"`
	// ErrorClass is a short stable class: timeout, refused, tls, status, body, dns, ...
	ErrorClass string `json:"error_class,omitempty"`
	Error      string `json:"error,omitempty"`
	// HTTPStatus is the status code an HTTP check received.
	HTTPStatus int `json:"http_status,omitempty"`
	// CertExpiryDays is the days left on an HTTPS endpoint's leaf certificate.
	CertExpiryDays *float64 `json:"cert_expiry_days,omitempty"`
}

// ProbeBatch is every result one prober produced in one tick.
type ProbeBatch struct {
	Region  string        `json:"region"`
	Prober  string        `json:"prober"`
	Results []ProbeResult `json:"results"`
}

// Thresholds are the decision parameters in force when a transition was made; a field that does
// not apply (fall and rise of an edge, heartbeat_fall of an endpoint) is left out.
type Thresholds struct {
	Fall          int     `json:"fall,omitempty"`
	Rise          int     `json:"rise,omitempty"`
	Quorum        float64 `json:"quorum,omitempty"`
	HoldDownMS    int64   `json:"hold_down_ms,omitempty"`
	StaleAfterMS  int64   `json:"stale_after_ms,omitempty"`
	MinAvailable  string  `json:"min_available,omitempty"`
	IntervalMS    int64   `json:"interval_ms,omitempty"`
	HeartbeatFall int     `json:"heartbeat_fall,omitempty"`
}

// Vote is one probing region's view of an endpoint when a transition was made.
type Vote struct {
	Region string `json:"region"`
	Status Status `json:"status"`
}

// Transition records that an endpoint, pool or edge entered a new status, and why.
type Transition struct {
	App      string `json:"app,omitempty"`
	Pool     string `json:"pool,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Address  string `json:"address,omitempty"`
	Edge     string `json:"edge,omitempty"`
	From     Status `json:"from"`
	To       Status `json:"to"`
	// Reason is a short human sentence: "3 consecutive failures", "override force_down".
	Reason string `json:"reason"`
	// Results are the ids of the probe results (or heartbeats) that completed the threshold.
	Results    []string   `json:"results,omitempty"`
	Votes      []Vote     `json:"votes,omitempty"`
	Thresholds Thresholds `json:"thresholds,omitzero"`
	// Drill is, on an endpoint's transition, the id of the drill whose simulated failure made
	// the status it records, not the probes; on a pool's down, the drill of the endpoint's
	// transition that caused it (its cause), so that the pool's down is known for the drill's
	// once that endpoint has moved on; empty otherwise. Endpoints' transitions from before the
	// field tell it by their reason's wording alone ("drill <id>: simulated failure of …"), pools'
	// by their cause alone.
	Drill string `json:"drill,omitempty"`
}

// HoldDown is a hold-down of an endpoint that began or was cancelled.
type HoldDown struct {
	App      string `json:"app"`
	Pool     string `json:"pool"`
	Endpoint string `json:"endpoint"`
	// Address is the endpoint's address the results were of: a hold-down begun at another address
	// than the one configured now is not resumed.
	Address string `json:"address,omitempty"`
	// HoldDown is the app's hold_down when the event was appended, e.g. "30s".
	HoldDown string `json:"hold_down"`
	// Reason is a short human sentence: the vote that began or cancelled it.
	Reason string `json:"reason"`
}

// Override actions.
const (
	ActionForceUp   = "force_up"
	ActionForceDown = "force_down"
	ActionDrain     = "drain"
)

// Override is an operator's decision that wins over probes until it is cleared.
type Override struct {
	App      string `json:"app"`
	Pool     string `json:"pool"`
	Endpoint string `json:"endpoint,omitempty"`
	// Action is force_up, force_down or drain; empty in TypeOverrideCleared.
	Action string `json:"action,omitempty"`
	Reason string `json:"reason"`
	// By names who made it (user@host).
	By string `json:"by"`
}

// ConfigApplied is a new desired configuration, as the YAML document the operator applied.
type ConfigApplied struct {
	// Document is the YAML text; workers parse it with config.Parse.
	Document string `json:"document"`
	// SHA256 is the hex digest of Document.
	SHA256 string `json:"sha256"`
	By     string `json:"by"`
	// Message says why it was applied (`detour apply -m`). Optional.
	Message string `json:"message,omitempty"`
}

// RecordChange is one RRset that a zone change added, replaced or removed.
type RecordChange struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Before []string `json:"before,omitempty"`
	After  []string `json:"after,omitempty"`
}

// ZoneChanged records a new serial of a zone and what changed in it.
type ZoneChanged struct {
	Zone    string         `json:"zone"`
	Serial  uint32         `json:"serial"`
	Changes []RecordChange `json:"changes"`
	// Step is the change as one IXFR step (RFC 1995) from the serial before, whole records in
	// presentation form, so that a restarted server answers IXFR from the stream. Events
	// written before it was added lack it, as do changes that are no step of one history (the
	// first serial after a start or a new configuration): readers treat them as a break.
	Step *ZoneStep `json:"step,omitempty"`
	// Part and Parts number the events of one version whose changes outgrow one NATS message
	// (a region of thousands of apps failing at once): each carries some of the changes, none
	// the step. Both are zero for a version told in one event.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
	// Server is the id of the DNS server that served the version (kept in its data directory),
	// beside its name in the envelope's source: a server rebuilding its IXFR history steps only
	// through its own versions. Events written before it was added lack it.
	Server string `json:"server,omitempty"`
	// Digest is the hex SHA-256 of the version's records in presentation form, the SOA's serial
	// set to 0 (dnsupdater's zone.Digest): two servers' versions of one zone hold the same
	// records when their digests are equal, whatever their serials. Events written before it
	// was added lack it.
	Digest string `json:"digest,omitempty"`
	// StateSeq is the sequence of the last STATE event folded when the version was made: of two
	// servers' versions of one zone with other records, the one folded further is the newer
	// (their configurations alike). Events written before it was added lack it.
	StateSeq uint64 `json:"state_seq,omitempty"`
}

// ZoneStep is one version step of a zone: the records From had that Serial lacks, and those
// Serial added.
type ZoneStep struct {
	From    uint32   `json:"from"`
	Deleted []string `json:"deleted,omitempty"`
	Added   []string `json:"added,omitempty"`
}

// TransitionStatus is the status a transition event of type typ records; ok is false for every
// other type.
func TransitionStatus(typ string) (s Status, ok bool) {
	switch typ {
	case TypeEndpointUp, TypePoolUp, TypeEdgeUp:
		return StatusUp, true
	case TypeEndpointDown, TypePoolDown, TypeEdgeDown:
		return StatusDown, true
	case TypeEndpointDrained:
		return StatusDrained, true
	}
	return StatusUnknown, false
}

// Outcomes of an alert delivery attempt.
const (
	AlertDelivered = "delivered"
	AlertFailed    = "failed"
	// AlertAbandoned is a failed attempt after which retry_for has run out.
	AlertAbandoned = "abandoned"
)

// AlertAttempt is one try at delivering an alert to a webhook.
type AlertAttempt struct {
	Alert string `json:"alert"`
	// Kind is what the alert is about: transition, pool_down, failover, edge_down.
	Kind string `json:"kind"`
	// Webhook is the receiver's scheme and host, with a digest of its URL where it has a path
	// or query (https://hooks.slack.com/…#1a2b3c4d): a webhook's path or query may be its
	// credential.
	Webhook string `json:"webhook"`
	// Delivery identifies the delivery all attempts of one alert to one webhook share.
	Delivery string `json:"delivery"`
	Attempt  int    `json:"attempt"`
	// Result is delivered, failed or abandoned.
	Result     string `json:"result"`
	HTTPStatus int    `json:"http_status,omitempty"`
	Error      string `json:"error,omitempty"`
	// RetryInMS is the wait before the next attempt, after a failure.
	RetryInMS int64 `json:"retry_in_ms,omitempty"`
	// Text is the alert's one-line summary.
	Text string `json:"text"`
	// Tried is the id of the STATE event up to which (in STATE order) every delivery the
	// recording sender owed had been tried at least once, its attempt handed to be recorded
	// before this one: a sender that starts sends the alerts of later events that no attempt
	// tells of. Empty until the recording sender has tried what was owed when it started.
	Tried string `json:"tried,omitempty"`
	// TriedDrills is Tried's twin for DRILLS: the id of the DRILLS event (a drill's end) up to
	// which every drill_result delivery the recording sender owed had been tried at least once,
	// so that a sender that starts sends the drill results of later drills that no attempt or
	// claim tells of (their sender stopped before it claimed them).
	TriedDrills string `json:"tried_drills,omitempty"`
	// TriedFor is a digest of the recording sender's alert groups: their names, what each is
	// told about, its apps and its webhooks' URLs. Tried and TriedDrills vouch to the other
	// senders only for the deliveries of those groups, to one whose groups have the same digest,
	// and only for the events from TriedSince and TriedDrillsSince on (the first the recording
	// sender dispatched for those groups); empty when they vouch for none. A sender's own
	// attempts, recorded before it restarted, tell it up to where it had tried whatever its
	// groups were then.
	TriedFor         string `json:"tried_for,omitempty"`
	TriedSince       string `json:"tried_since,omitempty"`
	TriedDrillsSince string `json:"tried_drills_since,omitempty"`
}

// AlertClaim is a sender taking one attempt of a delivery before it makes it, on the attempt's
// AlertClaimSubject, appended only while that subject holds nothing: JetStream stores the first
// claim and refuses the others however late they come (within ALERTS' duplicate window it may
// answer them as duplicates: the id is derived from the delivery and the attempt, the same for
// every sender), and a sender whose claim was not stored waits for that attempt's record instead
// of making it.
type AlertClaim struct {
	Alert    string `json:"alert"`
	Kind     string `json:"kind"`
	Webhook  string `json:"webhook"`
	Delivery string `json:"delivery"`
	Attempt  int    `json:"attempt"`
}
