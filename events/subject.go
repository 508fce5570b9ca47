package events

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Subject prefixes and wildcards, for consumers.
const (
	SubjectProbes = "detour.probe.>"
	SubjectState  = "detour.state.>"
	// SubjectConfig holds the configuration's subjects: its documents, which CONFIG stores
	// (SubjectConfigDocs), and each role's refusals of a version, which REJECTIONS stores
	// (SubjectRejected).
	SubjectConfig     = "detour.config.>"
	SubjectConfigDocs = "detour.config.document.>"
	SubjectRejected   = "detour.config.rejected.>"
	SubjectDNS        = "detour.dns.>"
	SubjectRoutes     = "detour.routes.>"
	SubjectDrills     = "detour.drill.>"
	SubjectAlerts     = "detour.alert.>"
	SubjectConfigDoc  = "detour.config.document.active"
)

// ValidToken reports whether s can stand as one subject token: letters, digits, '_' and '-'
// (the regular expression ^[A-Za-z0-9_-]+$, which subject_test.go checks it against). Every
// subject built and every STATE lookup validates its tokens, so this is a loop, not a regexp.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

// tokenByte reports whether c may stand in a subject token.
func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// InboxPrefix is where the NATS user named user receives its replies (JetStream API answers,
// consumer deliveries, publish acknowledgements): "_INBOX_<user>", set with nats.CustomInboxPrefix.
// deployments/nats/accounts.conf lets each user subscribe under its own prefix only, so that no
// role reads another's replies. A name that cannot stand as a subject token gets nats.go's
// default, "_INBOX".
func InboxPrefix(user string) string {
	if !ValidToken(user) {
		return "_INBOX"
	}
	return inboxPrefix + user
}

// inboxPrefix starts every user's own inbox prefix.
const inboxPrefix = "_INBOX_"

// ConsumerName is the name of the consumer through which the NATS user named user reads a
// stream (see Follower.Reader): the user's own name for the role's own reading, <user>-<reader>
// for another reader in the same process (the configuration watch: "config"). Names are per
// stream, so one user's consumers of STATE and of CONFIG may share a name. A user's NATS
// permissions allow exactly these names: $JS.API.CONSUMER.{CREATE,INFO,MSG.NEXT,DELETE}.<stream>.<name>.
func ConsumerName(user, reader string) string {
	if reader == "" {
		return user
	}
	return user + "-" + reader
}

// CheckToken returns an error naming what is wrong with s as a subject token, or nil.
func CheckToken(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if !ValidToken(s) {
		return fmt.Errorf("%q may hold only letters, digits, '_' and '-'", s)
	}
	return nil
}

// AddressToken turns a host:port address into a subject token: "127.0.0.11:8081" becomes
// "127-0-0-11_8081" and "[2001:db8::1]:443" becomes "2001-db8--1_443".
func AddressToken(addr string) string {
	host, port := addr, ""
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && (strings.HasPrefix(addr, "[") || strings.Count(addr, ":") == 1) {
		host, port = addr[:i], addr[i+1:]
	}
	host = strings.Trim(host, "[]")
	host = strings.NewReplacer(".", "-", ":", "-").Replace(host)
	if port == "" {
		return host
	}
	return host + "_" + port
}

// ZoneToken turns a DNS name into a subject token: "demo.test." becomes "demo_test".
func ZoneToken(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSuffix(name, ".")), ".", "_")
}

// ProbeSubject is where one result of a check of an endpoint from a region is published.
func ProbeSubject(region, app, pool, endpoint string) string {
	return join("detour.probe", region, app, pool, endpoint)
}

// EdgeProbePool is the pool token of the probe results of an edge's listeners: probers check
// each edge app listener as endpoint <edge> of pool EdgeProbePool of the app. A result published
// alone goes on its ProbeSubject (matched by EdgeProbeSubjects); results gathered in a batch go on
// EdgeProbeBatchSubject, apart from the endpoints' batches, so the controller follows the edges'
// results without reading every endpoint's.
const EdgeProbePool = "_edge"

// EdgeProbeSubjects matches the lone probe results of every edge listener from every region.
const EdgeProbeSubjects = "detour.probe.*.*." + EdgeProbePool + ".*"

// EdgeProbeBatchSubjects matches the batches of edge-listener results of every prober.
const EdgeProbeBatchSubjects = "detour.probe.*." + EdgeProbePool + ".*"

// BatchProbePool is the pool token of the subjects of the endpoints' batches: no pool may be
// named so, so a batch's subject, ProbeBatchSubject, is never a lone result's, though both have
// four tokens after detour.probe.
const BatchProbePool = "_batch"

// batchProbeApp stands in the app token of ProbeBatchSubject.
const batchProbeApp = "_endpoints"

// ProbeBatchSubjects matches the batches of endpoint results of every prober.
const ProbeBatchSubjects = "detour.probe.*." + batchProbeApp + "." + BatchProbePool + ".*"

// EndpointProbeSubjects matches every probe result published alone (ProbeSubject, an edge
// listener's included) and every batch of endpoint results (ProbeBatchSubject): all of PROBES but
// the batches of edge-listener results, which only the controller follows. It is the decider's
// one filter subject, so its NATS user may be allowed this filter and no broader one (a consumer
// with more than one filter subject is created on a subject that carries none).
const EndpointProbeSubjects = "detour.probe.*.*.*.*"

// ProbeBatchSubject is where one prober publishes a batch of endpoint results. Before
// EndpointProbeSubjects it was detour.probe.<region>.batch.<prober>, which no single filter could
// take with the lone results and not the edge listeners' batches.
func ProbeBatchSubject(region, prober string) string {
	return join("detour.probe", region, batchProbeApp, BatchProbePool, prober)
}

// EdgeProbeBatchSubject is where one prober publishes a batch of edge-listener results.
func EdgeProbeBatchSubject(region, prober string) string {
	return join("detour.probe", region, EdgeProbePool, prober)
}

// IsEdgeProbeBatch reports whether subject is an EdgeProbeBatchSubject.
func IsEdgeProbeBatch(subject string) bool {
	tok := SplitSubject(subject, "detour.probe")
	return len(tok) == 3 && tok[1] == EdgeProbePool
}

// EndpointStateSubject holds the transitions of one endpoint.
func EndpointStateSubject(app, pool, endpoint string) string {
	return join("detour.state.endpoint", app, pool, endpoint)
}

// HoldDownSubject holds when the hold-downs of one endpoint began and were cancelled
// (TypeHoldDownStarted, TypeHoldDownCancelled), beside its transitions' subject so that the last
// event there stays the endpoint's status.
func HoldDownSubject(app, pool, endpoint string) string {
	return join("detour.state.holddown", app, pool, endpoint)
}

// PoolStateSubject holds the transitions of one pool.
func PoolStateSubject(app, pool string) string { return join("detour.state.pool", app, pool) }

// EdgeStateSubject holds the transitions of one edge proxy.
func EdgeStateSubject(edge string) string { return join("detour.state.edge", edge) }

// OverrideWholePool is the endpoint token of an override that covers a whole pool.
const OverrideWholePool = "_pool"

// OverrideSubject holds the overrides of one endpoint, or of a whole pool when endpoint is "".
func OverrideSubject(app, pool, endpoint string) string {
	if endpoint == "" {
		endpoint = OverrideWholePool
	}
	return join("detour.state.override", app, pool, endpoint)
}

// ZoneSubject holds the changes of one zone that one DNS server recorded (its versions, and its
// pushes to the zone's primary): writer is WriterToken of the server. Each server its own
// subject, so that deployments/nats/accounts.conf lets a server write only its own: a server's
// IXFR history is what it reads back from there, and no other may write into it.
func ZoneSubject(zone, writer string) string { return join("detour.dns", ZoneToken(zone), writer) }

// WriterZoneSubjects matches every ZoneSubject of writer: all that one DNS server recorded.
func WriterZoneSubjects(writer string) string {
	if !ValidToken(writer) {
		panic(fmt.Sprintf("events: invalid subject token %q under detour.dns.*", writer))
	}
	return "detour.dns.*." + writer
}

// WriterToken is the subject token that names the process of nc and name on the subjects each
// writer has its own of (ZoneSubject, and its refusals of a configuration version): its NATS
// user, under whose token alone accounts.conf lets it publish there, or, connected without one
// (detour up), name with every character a token cannot hold made "_".
func WriterToken(nc *nats.Conn, name string) string {
	if user := inboxUser(nc); user != "" {
		return user
	}
	b := []byte(name)
	for i, c := range b {
		if !tokenByte(c) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// RoutesSubject held the whole route tables of one edge (TypeRoutesComputed), before each app's
// route had a subject of its own; history and the edges' snapshots still hold such tables.
func RoutesSubject(edge string) string { return join("detour.routes", edge) }

// AppRouteSubject holds the routes of one app on one edge (TypeRouteComputed).
func AppRouteSubject(edge, app string) string { return join("detour.routes", edge, app) }

// EdgeRoutesSubjects matches the routes of every app of one edge.
func EdgeRoutesSubjects(edge string) string { return RoutesSubject(edge) + ".>" }

// DrillSubject holds the events of one drill run.
func DrillSubject(drillID string) string { return join("detour.drill", drillID) }

// DrillClaimSubject holds the claims of one app by drills: a drill starts only after appending
// its claim there with the subject's last sequence it read, so of two drills racing for the app
// exactly one wins.
func DrillClaimSubject(app string) string { return join("detour.drill.claim", app) }

// AlertSubject holds the delivery attempts of one alert group.
func AlertSubject(group string) string { return join("detour.alert", group) }

// AlertClaimSubject holds the claim of one attempt of one delivery of an alert group: a sender
// appends its claim there only while the subject holds none, so that of the senders that claim
// the attempt, however far apart, exactly one makes it.
func AlertClaimSubject(group, delivery string, attempt int) string {
	return join("detour.alert", group, "claim", delivery, strconv.Itoa(attempt))
}

// join builds a subject from a prefix and tokens. A token that is not valid is a wiring mistake:
// configuration validation makes sure names are tokens before any subject is built.
func join(prefix string, tokens ...string) string {
	for _, t := range tokens {
		if !ValidToken(t) {
			panic(fmt.Sprintf("events: invalid subject token %q under %s", t, prefix))
		}
	}
	return prefix + "." + strings.Join(tokens, ".")
}

// SplitSubject returns the tokens of subject after prefix (which has no trailing dot), or nil if
// subject does not start with it.
func SplitSubject(subject, prefix string) []string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return nil
	}
	return strings.Split(rest, ".")
}
