package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"go.yaml.in/yaml/v3"
)

// Config is the whole desired state of one Detour installation.
type Config struct {
	// Zones Detour is authoritative for (or pushes into with RFC 2136). At least one.
	Zones []Zone `yaml:"zones"`
	// Apps are the names Detour answers for and the pools behind them.
	Apps []App `yaml:"apps"`
	// Edges are the edge proxies in front of the apps. Optional.
	Edges []Edge `yaml:"edges,omitempty"`
	// DNS sets the behaviour of the authoritative servers. Optional.
	DNS DNS `yaml:"dns,omitempty"`
	// Regions are the probing regions whose results count; a result from any other region is
	// dropped. Default (see ProbingRegions): the regions the pools name; when no pool names one,
	// any region counts.
	Regions []string `yaml:"regions,omitempty"`
	// Alerts are groups of webhooks told about transitions and failovers. Optional.
	Alerts []Alert `yaml:"alerts,omitempty"`
	// Streams bounds the JetStream streams, as `detour apply` and `detour up` create or update
	// them. Optional.
	Streams Streams `yaml:"streams,omitempty"`

	// Version is the CONFIG stream sequence this configuration was read from, set by
	// Version.Config (so by Watch too), so that a role which cannot apply it can say which
	// version it refused (Reject), and a DNS server's push marker names the version its records
	// were projected from; 0 for a file.
	Version uint64 `yaml:"-" json:"-"`
	// Applied is when Version was applied (Version.Time, by its applier's clock), set with it,
	// which a DNS server's push marker names too: a version of a CONFIG stream deleted and
	// created again is numbered lower than the old stream's, yet applied later; zero for a file.
	Applied time.Time `yaml:"-" json:"-"`
	// Event is the id of the detour.config.applied.v1 event that carried this configuration, set
	// by Watch, so that what a role changes on applying it can name it as the cause; "" for a file.
	Event string `yaml:"-" json:"-"`
	// Stored is when CONFIG stored the version, set by Watch, so that a role can place it among
	// the events of other streams as they were stored; zero for a file.
	Stored time.Time `yaml:"-" json:"-"`

	// names indexes Apps and Edges by name; ApplyDefaults builds it.
	names *names
}

// Zone is a DNS zone Detour serves.
type Zone struct {
	// Name is the zone apex, e.g. "demo.test".
	Name string `yaml:"name"`
	// TTL of the SOA and NS records. Default 3600.
	TTL uint32 `yaml:"ttl,omitempty"`
	// NegativeTTL is the SOA minimum: how long resolvers cache NXDOMAIN and NODATA. Default 5.
	NegativeTTL uint32 `yaml:"negative_ttl,omitempty"`
	// Hostmaster is the SOA RNAME as a mailbox name. Default "hostmaster.<zone>".
	Hostmaster string `yaml:"hostmaster,omitempty"`
	// Nameservers are the zone's NS records; an address makes Detour serve its glue.
	// Default: ns1.<zone> with address 127.0.0.1.
	Nameservers []Nameserver `yaml:"nameservers,omitempty"`
	// Records are static records in zone-file syntax, names relative to the zone or absolute.
	Records []string `yaml:"records,omitempty"`
	// TransferTo lists the addresses or CIDRs allowed to transfer the zone (AXFR). Default none.
	TransferTo []string `yaml:"transfer_to,omitempty"`
	// Notify lists host:port secondaries sent a NOTIFY on every serial change. Default none.
	Notify []string `yaml:"notify,omitempty"`
	// TransferTSIG, when set, is the key a secondary must sign its transfers with, besides
	// asking from an address of TransferTo (as Knot's and BIND's ACLs of an address and a
	// key), and that signs the NOTIFYs to Notify. Default: none, transfers by address alone and
	// unsigned NOTIFYs.
	TransferTSIG *TSIG `yaml:"transfer_tsig,omitempty"`
	// Push, when set, sends every change to an existing primary server with RFC 2136 UPDATE.
	Push *Push `yaml:"push,omitempty"`
}

// Nameserver is one NS record of a zone.
type Nameserver struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address,omitempty"`
}

// Push is an existing primary DNS server that receives Detour's records by RFC 2136 UPDATE.
type Push struct {
	// Server is the primary's host:port.
	Server string `yaml:"server"`
	// TSIG signs the updates. Required: Detour never sends unsigned updates.
	TSIG TSIG `yaml:"tsig"`
	// RetryInterval is the wait before retrying a failed push, doubled at each failure after
	// the first up to 16 times it. Default 2s, at least 100ms, at most 1h.
	RetryInterval Duration `yaml:"retry_interval,omitempty"`
	// Marker is the name, in the zone, of the TXT record each push leaves to say which STATE
	// position the pushed records reflect: a server behind it does not push. Default
	// _detour-state.<zone>.
	Marker string `yaml:"marker,omitempty"`
}

// TSIG is a shared key for signing DNS messages.
type TSIG struct {
	// Name is the key name, e.g. "detour-key".
	Name string `yaml:"name"`
	// Algorithm is hmac-sha256 (default), hmac-sha384, hmac-sha512 or hmac-sha1.
	Algorithm string `yaml:"algorithm,omitempty"`
	// Secret is the base64 key, inline: stored in CONFIG where every role may read it, so prefer
	// SecretFile or SecretEnv. Exactly one of the three is required.
	Secret string `yaml:"secret,omitempty"`
	// SecretFile is a file holding the base64 key, read by the DNS server that uses the key.
	SecretFile string `yaml:"secret_file,omitempty"`
	// SecretEnv is an environment variable holding the base64 key, read by the DNS server.
	SecretEnv string `yaml:"secret_env,omitempty"`
}

// Policies for choosing the answer of an app.
const (
	PolicyFailover   = "failover"
	PolicyWeighted   = "weighted"
	PolicyRoundRobin = "round_robin"
	PolicySource     = "source"
)

// What to answer when no pool of an app is available.
const (
	FailOpen   = "fail_open"
	FailClosed = "fail_closed"
)

// App is one name Detour answers for.
type App struct {
	// Name identifies the app in events and commands; letters, digits, '_' and '-'.
	Name string `yaml:"name"`
	// FQDN is the name Detour answers for; it must lie inside a configured zone.
	FQDN string `yaml:"fqdn"`
	// TTL of the answers. Default 30.
	TTL uint32 `yaml:"ttl,omitempty"`
	// Policy is failover (default), weighted, round_robin or source.
	Policy string `yaml:"policy,omitempty"`
	// MaxAnswers caps the addresses in one answer. Default 0: all of them.
	MaxAnswers int `yaml:"max_answers,omitempty"`
	// Check is how every endpoint of the app is health-checked.
	Check Check `yaml:"check,omitempty"`
	// Pools of endpoints; for failover, in order of preference.
	Pools []Pool `yaml:"pools"`
	// Sources map client subnets to pools, first match wins (policy source only).
	Sources []SourceRule `yaml:"sources,omitempty"`
	// DefaultPools answer clients no source rule matches (policy source). Default: every pool, in order.
	DefaultPools []string `yaml:"default_pools,omitempty"`
	// WhenAllDown is fail_open (default: answer every address, as Route 53 does) or fail_closed
	// (an empty NOERROR answer).
	WhenAllDown string `yaml:"when_all_down,omitempty"`
	// Quorum is the share of voting probe regions that must see an endpoint healthy for it to be up.
	// Default 0.5: at least half.
	Quorum float64 `yaml:"quorum,omitempty"`
	// HoldDown is how long a recovered endpoint must stay healthy before it returns. Default 0.
	HoldDown Duration `yaml:"hold_down,omitempty"`
	// Ingress edges: the FQDN becomes a CNAME to the first live one. Optional.
	Ingress []string `yaml:"ingress,omitempty"`
	// PrimaryEdge is the CNAME target when no ingress edge is live. Optional.
	PrimaryEdge string `yaml:"primary_edge,omitempty"`
}

// Check types.
const (
	CheckHTTP  = "http"
	CheckHTTPS = "https"
	CheckTCP   = "tcp"
	CheckICMP  = "icmp"
	CheckDNS   = "dns"
)

// Check is a health check run against every endpoint of an app.
type Check struct {
	// Type is http, https, tcp (default), icmp or dns.
	Type string `yaml:"type,omitempty"`
	// Port overrides the endpoint's port for the check. Default: the endpoint's port.
	Port int `yaml:"port,omitempty"`
	// Path of an http(s) check. Default "/". A token in it (a query parameter such as api_key,
	// a segment that looks like one) is stored in CONFIG and shown redacted (secretFields).
	Path string `yaml:"path,omitempty"`
	// Method of an http(s) check. Default GET.
	Method string `yaml:"method,omitempty"`
	// Host is the Host header (and the TLS server name unless ServerName is set). Default: the address.
	Host string `yaml:"host,omitempty"`
	// Headers are added to an http(s) check request. A credential (Authorization, Cookie,
	// X-Api-Key…) written here is stored in CONFIG and shown redacted (secretFields): give it
	// with HeadersFile or HeadersEnv instead.
	Headers map[string]string `yaml:"headers,omitempty"`
	// HeadersFile maps a header's name to a file holding its value, and HeadersEnv to an
	// environment variable holding it (surrounding white space trimmed), read by the prober
	// that runs the check (ReadHeaders), never stored in CONFIG. A header is given in one of
	// Headers, HeadersFile and HeadersEnv. Default: none.
	HeadersFile map[string]string `yaml:"headers_file,omitempty"`
	HeadersEnv  map[string]string `yaml:"headers_env,omitempty"`
	// ExpectStatus lists the accepted status codes or ranges ("200", "200-399"). Default ["200-399"].
	ExpectStatus []string `yaml:"expect_status,omitempty"`
	// BodyContains must occur in the first 5,120 bytes of the body. Default: not checked.
	BodyContains string `yaml:"body_contains,omitempty"`
	// InsecureSkipVerify turns off TLS certificate verification. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
	// ServerName is the TLS SNI name. Default: Host, else the address's host.
	ServerName string `yaml:"server_name,omitempty"`
	// Send is written after a tcp connect; Expect must then be read. Default: connect only. A
	// login in it (AUTH, PASS, LOGIN…) is stored in CONFIG and shown redacted (secretFields):
	// give it with SendFile or SendEnv instead, a file or an environment variable holding what
	// to send, read as it is (line ends kept) by the prober that runs the check (ReadSend). At
	// most one of the three.
	Send     string `yaml:"send,omitempty"`
	SendFile string `yaml:"send_file,omitempty"`
	SendEnv  string `yaml:"send_env,omitempty"`
	Expect   string `yaml:"expect,omitempty"`
	// Query is the name a dns check asks for; QueryType its type (default A).
	Query     string `yaml:"query,omitempty"`
	QueryType string `yaml:"query_type,omitempty"`
	// ExpectRcode is the rcode a dns check needs (default NOERROR); ExpectAnswer, when set, must
	// appear in the answer's record data.
	ExpectRcode  string `yaml:"expect_rcode,omitempty"`
	ExpectAnswer string `yaml:"expect_answer,omitempty"`
	// Interval between checks of one endpoint from one region. Default 5s.
	Interval Duration `yaml:"interval,omitempty"`
	// Timeout of one check; at most Interval. Default: the smaller of 2s and Interval.
	Timeout Duration `yaml:"timeout,omitempty"`
	// Jitter moves each check's instant in each window by a random amount up to this much, on
	// top of the fixed phase that already spreads an app's checks over the interval. Default 0:
	// every check keeps its instant, so the fall-th failed check comes at most Interval × Fall
	// after a failure; a jitter adds up to itself to that.
	Jitter Duration `yaml:"jitter,omitempty"`
	// Fall consecutive failures take an endpoint down. Default 3.
	Fall int `yaml:"fall,omitempty"`
	// Rise consecutive successes bring it back. Default 2.
	Rise int `yaml:"rise,omitempty"`
	// StaleAfter without a result makes a region stop voting. Default 3 × Interval.
	StaleAfter Duration `yaml:"stale_after,omitempty"`
}

// Pool is a set of endpoints that is available while enough of them are up.
type Pool struct {
	// Name identifies the pool within its app; letters, digits, '_' and '-'.
	Name string `yaml:"name"`
	// Region is where the pool's endpoints run (informational; edges use it). Optional.
	Region string `yaml:"region,omitempty"`
	// MinAvailable is a count ("1") or a share ("50%") of endpoints that must be up. Default 1.
	MinAvailable MinAvailable `yaml:"min_available,omitempty"`
	// Weight of the pool under policy weighted, at most MaxWeight. Default 1.
	Weight int `yaml:"weight,omitempty"`
	// Endpoints of the pool. At least one.
	Endpoints []Endpoint `yaml:"endpoints"`
}

// Endpoint is one address of a pool.
type Endpoint struct {
	// Name identifies the endpoint in subjects. Default: the address as a token ("127-0-0-11_8081").
	Name string `yaml:"name,omitempty"`
	// Address is ip:port, or a bare IP (v4 or v6) where no port is needed: the app's check is
	// icmp or sets check.port, and no edge forwards to it. The ip is what DNS answers.
	Address string `yaml:"address"`
	// Weight under policy weighted, at most MaxWeight. Default 1; 0 keeps it out of weighted
	// answers.
	Weight *int `yaml:"weight,omitempty"`
	// written is Address as the document spells it, and formerName the name an earlier Detour
	// gave it, from that spelling; both "" unless Name was derived from Address and the
	// spelling changed it (see Warnings).
	written, formerName string
}

// SourceRule sends clients from some subnets to an ordered list of pools.
type SourceRule struct {
	CIDRs []string `yaml:"cidrs"`
	Pools []string `yaml:"pools"`
}

// Edge is one edge proxy.
type Edge struct {
	// Name identifies the edge; letters, digits, '_' and '-'.
	Name string `yaml:"name"`
	// Region where the edge runs.
	Region string `yaml:"region"`
	// Hostname other edges and CNAMEs use to reach it; Detour serves its A/AAAA record when the
	// name lies in one of its zones.
	Hostname string `yaml:"hostname"`
	// Address is the edge's IP.
	Address string `yaml:"address"`
	// Heartbeat sets how the edge reports itself alive.
	Heartbeat Heartbeat `yaml:"heartbeat,omitempty"`
	// MaxConns is how many client connections the edge holds open at once over all its
	// listeners, as HAProxy's global maxconn: each holds a descriptor, and one more to an
	// instance while forwarded. At the limit every listener stops accepting, and the
	// connections wait in the kernel's backlog until one closes. Default (0): derived on the
	// edge's host from the descriptors the process may open (RLIMIT_NOFILE, which Go raises to
	// the hard limit at start): half of them less a reserve, at most 1000000. At most 1000000.
	MaxConns int `yaml:"max_conns,omitempty"`
	// Apps the edge fronts.
	Apps []EdgeApp `yaml:"apps,omitempty"`
}

// Heartbeat is how often an edge reports itself alive and how many misses make it dead.
type Heartbeat struct {
	// Interval between heartbeats. Default 1s.
	Interval Duration `yaml:"interval,omitempty"`
	// Fall missed heartbeats mark the edge down. Default 3.
	Fall int `yaml:"fall,omitempty"`
}

// Edge listener modes.
const (
	ModeHTTP = "http"
	ModeTCP  = "tcp"
)

// EdgeApp is one app behind an edge.
type EdgeApp struct {
	// App names the app.
	App string `yaml:"app"`
	// Listen is the host:port the edge accepts the app's traffic on.
	Listen string `yaml:"listen"`
	// Mode is http (default, L7) or tcp (L4).
	Mode string `yaml:"mode,omitempty"`
	// Pool is the app's pool local to this edge. Default: the first pool whose region is the edge's.
	Pool string `yaml:"pool,omitempty"`
	// Secondary is the edge that takes the app's traffic when the local pool is down.
	Secondary string `yaml:"secondary,omitempty"`
	// RetryMethods are retried once on another target after a connection error, besides GET, HEAD
	// and OPTIONS.
	RetryMethods []string `yaml:"retry_methods,omitempty"`
	// Timeouts bound every wait of the app's traffic (see EdgeTimeouts for the defaults).
	Timeouts EdgeTimeouts `yaml:"timeouts,omitempty"`
	// RetryOn lists what sends a retriable request to the next target: connect_failure,
	// timeout (response_header expired), and the statuses 502, 503, 504 from a local instance.
	// Default [connect_failure, timeout].
	RetryOn []string `yaml:"retry_on,omitempty"`
	// PassiveFall failed requests in a row (broken connections, timeouts, retry_on statuses)
	// make the edge eject a local instance, skipping it for PassiveCooldown without waiting for
	// the decider; a connection that cannot be made ejects it at once. Default 3.
	PassiveFall int `yaml:"passive_fall,omitempty"`
	// PassiveCooldown is how long an ejected instance is skipped before a request tries it
	// again; the route table saying it recovered ends it sooner. Default 2s.
	PassiveCooldown Duration `yaml:"passive_cooldown,omitempty"`
	// MaxHeaderBytes is the largest request head accepted; a larger one is answered 431.
	// Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes,omitempty"`
	// UnderscoresInHeaders forwards the request header fields whose names hold an underscore
	// (X_Forwarded_For). Default false: they are dropped, as nginx drops them, since a gateway
	// that folds '-' and '_' into one variable (CGI's, WSGI's, PHP's HTTP_X_FORWARDED_FOR)
	// would take a client's X_Forwarded_For for the X-Forwarded-For the edge sets, or for a
	// field the edge removes.
	UnderscoresInHeaders bool `yaml:"underscores_in_headers,omitempty"`
	// MaxConns is how many client connections the listener holds open at once, as HAProxy's
	// maxconn of a frontend: at it the listener stops accepting, and the next connections wait
	// in the kernel's backlog until one closes. Each holds a
	// descriptor, and one more to an instance while forwarded. Default 10000, at most 1000000.
	MaxConns int `yaml:"max_conns,omitempty"`
	// MaxConnsPerClient is how many of them one client (an IPv4 address, or an IPv6 /64, which
	// one host is routinely given whole) may hold, as nginx's limit_conn by address; one more is
	// closed as soon as it is accepted. Connections from the configuration's other edges (a
	// secondary's forwarding carries many clients) are not counted against it. Default 1000,
	// or max_conns when that is lower.
	MaxConnsPerClient int `yaml:"max_conns_per_client,omitempty"`
}

// EdgeTimeouts are an edge app's timeouts.
type EdgeTimeouts struct {
	// Connect bounds a connection attempt to an instance or a secondary edge; one that fails
	// (refused, unreachable or timed out) sent nothing, so with retry_on's connect_failure the
	// request goes to the next target whatever its method. Default 500ms.
	Connect Duration `yaml:"connect,omitempty"`
	// ResponseHeader bounds the wait for an answer's head once the request was sent; when it
	// expires a retriable request goes to the next target. Default 15s.
	ResponseHeader Duration `yaml:"response_header,omitempty"`
	// ResponseBody is the longest the edge waits between two reads of an instance's answer
	// body (not for the whole body, like nginx's proxy_read_timeout): a stream that sends
	// something at least that often is never cut. On expiry the connection to the instance is
	// closed, never reused, and the client's answer, which has started, is cut: its connection
	// closed (HTTP/1), never ended as if complete, or its stream reset (HTTP/2). Default 60s.
	ResponseBody Duration `yaml:"response_body,omitempty"`
	// Idle closes a keep-alive connection (client's or instance's) idle that long. Default 90s.
	Idle Duration `yaml:"idle,omitempty"`
	// ClientHeader bounds the reading of a client's request head. Default 10s.
	ClientHeader Duration `yaml:"client_header,omitempty"`
	// ClientBody is the longest the edge waits between two reads of a request body (not for
	// the whole body, like nginx's client_body_timeout). On expiry the upstream request is
	// aborted and its connection closed, and the client is answered 408 Request Timeout and
	// its connection closed (its HTTP/2 stream ended), or cut when its answer had started.
	// Default 60s.
	ClientBody Duration `yaml:"client_body,omitempty"`
	// ClientWrite is the longest a write to a client may stall before the edge drops the
	// client and its upstream connection. Default 60s.
	ClientWrite Duration `yaml:"client_write,omitempty"`
	// TCPIdle closes an L4 connection with no traffic either way for that long. Default 1h.
	TCPIdle Duration `yaml:"tcp_idle,omitempty"`
}

// Duration is a time.Duration written in YAML as "250ms", "5s", "1m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"500ms\" or \"5s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: want a duration such as \"500ms\" or \"5s\", got %q", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MaxWeight bounds a pool's or an endpoint's weight, so that the weights of any pool or app add
// up far below the largest integer: a sum that wrapped around would weigh nothing.
const MaxWeight = 1_000_000

// MinAvailable is a count of endpoints, or a share of them when Percent is set.
type MinAvailable struct {
	Count   int
	Percent float64
}

// Set reports whether a value was given.
func (m MinAvailable) Set() bool { return m.Count != 0 || m.Percent != 0 }

// Need is how many endpoints out of total must be up.
func (m MinAvailable) Need(total int) int {
	if m.Percent > 0 {
		return int(math.Ceil(m.Percent / 100 * float64(total)))
	}
	return m.Count
}

// String formats m as it is written in YAML.
func (m MinAvailable) String() string {
	if m.Percent > 0 {
		return strconv.FormatFloat(m.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(m.Count)
}

// UnmarshalYAML accepts a whole number or a percentage such as "50%".
func (m *MinAvailable) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || !(v > 0 && v <= 100) { // NaN is refused too
			return fmt.Errorf("line %d: want a percentage in (0, 100], got %q", n.Line, s)
		}
		*m = MinAvailable{Percent: v}
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return fmt.Errorf("line %d: want a whole number of endpoints of at least 1 or a percentage such as \"50%%\", got %q", n.Line, s)
	}
	*m = MinAvailable{Count: v}
	return nil
}

// MarshalYAML writes m as it is read.
func (m MinAvailable) MarshalYAML() (any, error) { return m.String(), nil }

// Streams bounds the JetStream streams Detour keeps.
type Streams struct {
	// Probes bounds PROBES, every check result (facts that replay and what-if read, and that
	// can be sampled away).
	Probes ProbeStream `yaml:"probes,omitempty"`
}

// ProbeStream bounds PROBES: the oldest results are discarded when either bound is reached.
type ProbeStream struct {
	// MaxAge is how long results are kept. Default 24h.
	MaxAge Duration `yaml:"max_age,omitempty"`
	// MaxBytes bounds the stream's size (JetStream reserves it on the store). Default: max_age's
	// worth of results at the configured check rate (ProbeRate × 512 bytes), at least 64 MiB and
	// at most 8 GiB.
	MaxBytes ByteSize `yaml:"max_bytes,omitempty"`
}

// Bounded reports whether ps bounds PROBES otherwise than by default.
func (ps ProbeStream) Bounded() bool {
	return ps.MaxBytes != 0 || (ps.MaxAge != 0 && ps.MaxAge.D() != events.DefaultProbeRetention)
}

// ByteSize is a number of bytes written in YAML as a whole number or with a unit: "512MiB",
// "8GiB", "100GB" (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024).
type ByteSize int64

// byteUnits are the units ByteSize reads, longest first.
var byteUnits = []struct {
	suffix string
	scale  int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseByteSize reads a size such as "8GiB", "100GB" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	num, scale := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, scale = strings.TrimSpace(rest), u.scale
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as \"512MiB\" or \"8GiB\", got %q", s)
	}
	if n > math.MaxInt64/scale {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * scale), nil
}

// String writes b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.scale == 0 {
			return strconv.FormatInt(int64(b)/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a size with or without a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a size such as \"512MiB\" or \"8GiB\"", n.Line)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }
