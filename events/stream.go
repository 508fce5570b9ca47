package events

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Stream names.
const (
	StreamProbes = "PROBES"
	StreamState  = "STATE"
	StreamConfig = "CONFIG"
	// StreamRejections holds each process's refusals of configuration versions, apart from
	// CONFIG: no flood of them can push a version out of CONFIG.
	StreamRejections = "REJECTIONS"
	StreamDNS        = "DNS"
	StreamRoutes     = "ROUTES"
	StreamDrills     = "DRILLS"
	StreamAlerts     = "ALERTS"
)

// BucketProbers is the key-value bucket where prober workers announce themselves, one key per
// worker ("<region>.<name>"). JetStream stores it in the stream StreamProbers.
const (
	BucketProbers = "detour_probers"
	StreamProbers = "KV_" + BucketProbers
	// ProbersTTL removes the records of workers that stopped long ago; liveness itself is judged
	// from each record's own TTL.
	ProbersTTL = time.Minute
)

// Storage bounds. STATE holds transitions, which cannot be sampled away: it has max_bytes of its
// own (StateReserve), and when even that is full appends fail loudly instead of discarding
// history. Every other stream a role writes is bounded too, so that one role's credentials
// cannot fill the store and stop STATE's appends: JetStream checks a stream's max_bytes against
// the server's max_file_store (or memory) only when the stream is made or changed, and a write
// against what the store holds, so STATE's max_bytes is room of its own only while the others'
// bounds hold what they store. PROBES holds facts that can be sampled away: bounded by bytes and
// message size, it discards its oldest results. CONFIG, REJECTIONS, DNS, ROUTES, DRILLS and
// ALERTS discard their oldest too, past bounds that hold far more than their writers
// legitimately store; the probers' bucket refuses new records when full.
const (
	// ProbeResultBytes is what one stored probe result costs, envelope and stream overhead included.
	ProbeResultBytes = 512
	// DefaultProbeMaxBytes bounds PROBES when the probe rate is not known.
	DefaultProbeMaxBytes = 1 << 30
	// MinProbeMaxBytes is the least PROBES is given by default, whatever the rate.
	MinProbeMaxBytes = 64 << 20
	// CapProbeMaxBytes is the most PROBES is given by default, whatever the rate: a day of
	// results at 10,000 endpoints checked every second would be 1.7 TB, which JetStream would
	// reserve. A larger bound is the operator's to set (streams.probes.max_bytes).
	CapProbeMaxBytes = 8 << 30
	// DefaultProbeRetention is how long PROBES keeps results unless configured
	// (streams.probes.max_age).
	DefaultProbeRetention = 24 * time.Hour
	// MaxProbeMessage bounds one PROBES message (a batch of results).
	MaxProbeMessage = 512 << 10
	// DefaultStateReserve is the storage reserved for STATE.
	DefaultStateReserve = 1 << 30
	// ConfigVersions is how many versions CONFIG keeps.
	ConfigVersions = 100
	// DefaultConfigMaxBytes bounds CONFIG, which only the operator and the controller's API
	// write: ConfigVersions of 1 MiB (NATS's default max_payload, the most one version takes
	// unless the servers' is raised) and more. Past it the oldest versions are discarded, never
	// the active one, the newest.
	DefaultConfigMaxBytes = 128 << 20
	// RejectionsPerSubject is how many refusals REJECTIONS keeps on each subject: each
	// process's last ones, its NATS user's only subject.
	RejectionsPerSubject = 100
	// MaxRejectionMessage bounds one refusal (config.Reject keeps the problems it lists within
	// it).
	MaxRejectionMessage = 64 << 10
	// RejectionsMaxBytes bounds REJECTIONS: RejectionsPerSubject of MaxRejectionMessage for ten
	// processes, and in practice all a deployment's (a refusal takes a few hundred bytes). Past
	// it the oldest refusals are discarded.
	RejectionsMaxBytes = 64 << 20
	// DefaultDNSMaxBytes bounds DNS, every DNS server's zone versions (a few hundred bytes to a
	// few KiB each: half a million versions), unless configured. Past it the oldest are
	// discarded.
	DefaultDNSMaxBytes = 512 << 20
	// MaxDNSMessage bounds one DNS message: a version whose changes take more is recorded in
	// parts.
	MaxDNSMessage = 1 << 20
	// ProbersPerRegion is how many records the probers' bucket holds for each probing region:
	// a record per live worker, and per worker stopped or renamed within ProbersTTL. An
	// operator raises the bucket's bound for a larger fleet (EnsureStreams keeps it).
	ProbersPerRegion = 1000
	// DefaultProbingRegions sizes the probers' bucket when the number of probing regions is not
	// known.
	DefaultProbingRegions = 16
	// MaxProberRecord bounds one record of the probers' bucket, a worker's heartbeat (about
	// 150 bytes and its region's and name's).
	MaxProberRecord = 1 << 10
	// RoutesPerSubject is how many routes ROUTES keeps of each edge's app: the last one, which
	// an edge and the controller read at start, and the changes before it that replay shows.
	RoutesPerSubject = 100
	// RoutesMaxBytes bounds ROUTES, which only the controller writes: about 250,000 routes of
	// 1 KiB (an app of a few endpoints). Past it the oldest are discarded, whatever their
	// subject; the controller stores an unchanged route again (EdgeRoute.RefreshOf) before its
	// only copy would go with them.
	RoutesMaxBytes = 256 << 20
	// MaxRouteMessage bounds one route (one app on one edge): NATS's default max_payload.
	MaxRouteMessage = 1 << 20
	// DrillsRetention is how long DRILLS keeps a drill's events: far longer than a drill lasts
	// (its max_duration, 10 minutes by default), so that the controller, the deciders and the
	// API, which read DRILLS from its first message at start, find every drill still running,
	// and the status page and replay the drills of three months.
	DrillsRetention = 90 * 24 * time.Hour
	// DrillsMaxBytes bounds DRILLS, which only the controller and an operator's drill write (a
	// drill's events take a few KiB). Past it the oldest are discarded.
	DrillsMaxBytes = 64 << 20
	// MaxDrillMessage bounds one drill event (the apps of a drill and its scorecard).
	MaxDrillMessage = 1 << 20
	// AlertsRetention is how long ALERTS keeps a delivery attempt. A controller that starts
	// reads back only its alert groups' longest retry_for, to resume the deliveries owed.
	AlertsRetention = 90 * 24 * time.Hour
	// AlertsMaxBytes bounds ALERTS, which only the controller's alert sender writes (an attempt
	// takes under 1 KiB). Past it the oldest attempts are discarded.
	AlertsMaxBytes = 64 << 20
	// MaxAlertMessage bounds one delivery attempt.
	MaxAlertMessage = 64 << 10
	// memoryShare divides the defaults of streams kept in memory (tests, benchmarks).
	memoryShare = 8
)

// StreamOptions size the streams for a deployment.
type StreamOptions struct {
	// Replicas of every stream and bucket: 1 on embedded JetStream, 3 on a cluster. Default 1.
	Replicas int
	// ProbeRetention is how long probe results are kept for replay. Default 24h.
	ProbeRetention time.Duration
	// ProbeRate is how many results per second every region together publishes (see
	// config.Config.ProbeRate); it sizes PROBES for ProbeRetention. Default: unknown.
	ProbeRate float64
	// ProbeMaxBytes bounds PROBES. Default: ProbeRate × ProbeRetention × ProbeResultBytes, at
	// least MinProbeMaxBytes and at most CapProbeMaxBytes; DefaultProbeMaxBytes when the rate is
	// unknown (an eighth of it in memory).
	ProbeMaxBytes int64
	// StateReserve is the storage reserved for STATE. Default DefaultStateReserve (an eighth of
	// it in memory).
	StateReserve int64
	// DNSMaxBytes bounds DNS. Default DefaultDNSMaxBytes (an eighth of it in memory).
	DNSMaxBytes int64
	// Regions is how many regions probe (config.Config.ProbingRegions); it sizes the probers'
	// bucket, ProbersPerRegion records each. Default DefaultProbingRegions.
	Regions int
	// Memory keeps every stream in memory instead of files (tests and benchmarks).
	Memory bool
}

func (o StreamOptions) withDefaults() StreamOptions {
	o.Replicas = max(o.Replicas, 1)
	if o.ProbeRetention == 0 {
		o.ProbeRetention = DefaultProbeRetention
	}
	if o.ProbeMaxBytes == 0 {
		o.ProbeMaxBytes = ProbeBytes(o.ProbeRate, o.ProbeRetention)
		if o.Memory && o.ProbeRate <= 0 {
			o.ProbeMaxBytes /= memoryShare
		}
	}
	if o.StateReserve == 0 {
		o.StateReserve = o.share(DefaultStateReserve)
	}
	if o.DNSMaxBytes == 0 {
		o.DNSMaxBytes = o.share(DefaultDNSMaxBytes)
	}
	if o.Regions <= 0 {
		o.Regions = DefaultProbingRegions
	}
	return o
}

// share is a default bound of n bytes, an eighth of it in memory.
func (o StreamOptions) share(n int64) int64 {
	if o.Memory {
		return n / memoryShare
	}
	return n
}

// ProbeBytes is the default size of PROBES: retention's worth of results at rate per second,
// within MinProbeMaxBytes and CapProbeMaxBytes.
func ProbeBytes(rate float64, retention time.Duration) int64 {
	if rate <= 0 {
		return DefaultProbeMaxBytes
	}
	return min(max(int64(min(rate*retention.Seconds()*ProbeResultBytes, math.MaxInt64/2)), MinProbeMaxBytes), CapProbeMaxBytes)
}

// ProbeFill is how long results at rate per second take to fill maxBytes of PROBES; 0 when the
// rate is unknown or the stream unbounded.
func ProbeFill(maxBytes int64, rate float64) time.Duration {
	if rate <= 0 || maxBytes <= 0 {
		return 0
	}
	return time.Duration(float64(maxBytes) / (rate * ProbeResultBytes) * float64(time.Second))
}

// ProbeBound is how PROBES is bounded, as the stream has it, at a rate of results.
type ProbeBound struct {
	MaxBytes int64
	MaxAge   time.Duration
	Rate     float64
	// Fill is how long Rate takes to fill MaxBytes; 0 when the rate is unknown.
	Fill time.Duration
}

// Short reports whether the rate fills the stream before MaxAge: results are then discarded by
// size, Fill after they are stored, long before their age. Fill is compared to the second, as it
// is printed: the default bound (ProbeBytes), whole bytes, falls short of its retention by less.
func (b ProbeBound) Short() bool {
	return b.Fill > 0 && b.MaxAge > 0 && b.Fill.Round(time.Second) < b.MaxAge
}

// ProbeBounds reads PROBES' bounds from the stream, with how long rate results per second take
// to fill it.
func ProbeBounds(ctx context.Context, js jetstream.JetStream, rate float64) (ProbeBound, error) {
	st, err := js.Stream(ctx, StreamProbes)
	if err != nil {
		return ProbeBound{}, fmt.Errorf("read the bounds of %s: %w", StreamProbes, err)
	}
	c := st.CachedInfo().Config
	return ProbeBound{MaxBytes: c.MaxBytes, MaxAge: c.MaxAge, Rate: rate, Fill: ProbeFill(c.MaxBytes, rate)}, nil
}

// ReportProbeBounds logs PROBES' bounds (see ProbeBounds) at start-up: info, or a warning when
// the rate fills the stream before its max age.
func ReportProbeBounds(ctx context.Context, js jetstream.JetStream, rate float64, log zerolog.Logger) error {
	b, err := ProbeBounds(ctx, js, rate)
	if err != nil {
		return err
	}
	ev, msg := log.Info(), "probe results stream bounded"
	if b.Short() {
		ev, msg = log.Warn(), "probe results stream fills before max_age: results are kept for fills_in, not max_age (set streams.probes.max_bytes or max_age)"
	}
	ev = ev.Str("stream", StreamProbes).Int64("max_bytes", b.MaxBytes).Dur("max_age", b.MaxAge).Float64("probe_rate", rate)
	if b.Fill > 0 {
		ev = ev.Dur("fills_in", b.Fill.Round(time.Millisecond))
	}
	ev.Msg(msg)
	return nil
}

// Streams returns the definitions of every stream Detour uses.
func Streams(o StreamOptions) []jetstream.StreamConfig {
	o = o.withDefaults()
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	base := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name: name, Description: desc, Subjects: subjects,
			Storage: storage, Replicas: o.Replicas, Retention: jetstream.LimitsPolicy,
			Discard: jetstream.DiscardOld, Duplicates: 2 * time.Minute, AllowDirect: true,
		}
	}
	probes := base(StreamProbes, "Every health-check result (facts, high volume)", SubjectProbes)
	probes.MaxAge = o.ProbeRetention
	probes.MaxBytes = o.ProbeMaxBytes
	probes.MaxMsgSize = MaxProbeMessage
	state := base(StreamState, "Append-only transitions of endpoints, pools, edges and overrides", SubjectState)
	state.DenyDelete, state.DenyPurge = true, true
	state.MaxBytes, state.Discard = o.StateReserve, jetstream.DiscardNew
	config := base(StreamConfig, "Desired configuration, every applied version", SubjectConfigDocs)
	config.MaxMsgsPerSubject, config.MaxBytes = ConfigVersions, o.share(DefaultConfigMaxBytes)
	rejections := base(StreamRejections, "Each process's refusals of configuration versions", SubjectRejected)
	rejections.MaxMsgsPerSubject, rejections.MaxMsgSize = RejectionsPerSubject, MaxRejectionMessage
	rejections.MaxBytes = o.share(RejectionsMaxBytes)
	dns := base(StreamDNS, "Zone changes with their serials", SubjectDNS)
	dns.MaxBytes, dns.MaxMsgSize = o.DNSMaxBytes, MaxDNSMessage
	routes := base(StreamRoutes, "Route tables of each edge proxy", SubjectRoutes)
	routes.MaxMsgsPerSubject, routes.MaxBytes, routes.MaxMsgSize = RoutesPerSubject, o.share(RoutesMaxBytes), MaxRouteMessage
	drills := base(StreamDrills, "Drill runs: plan, steps, rollback, scorecard", SubjectDrills)
	drills.MaxAge, drills.MaxBytes, drills.MaxMsgSize = DrillsRetention, o.share(DrillsMaxBytes), MaxDrillMessage
	alerts := base(StreamAlerts, "Every alert delivery attempt, delivered or not", SubjectAlerts)
	alerts.MaxAge, alerts.MaxBytes, alerts.MaxMsgSize = AlertsRetention, o.share(AlertsMaxBytes), MaxAlertMessage
	// CONFIG before REJECTIONS: EnsureStreams takes the rejections' subjects from an earlier
	// version's CONFIG before it makes REJECTIONS.
	return []jetstream.StreamConfig{probes, state, config, rejections, dns, routes, drills, alerts}
}

// ProbersStream returns the definition of the stream of the probers' membership bucket: the
// stream nats.go's CreateKeyValue makes for a bucket of History 1 and TTL ProbersTTL, but
// refusing roll-ups and bounded. A prober's NATS user may write the keys of its own region, and
// permissions look at subjects, never at headers: on a bucket that allows them, a Nats-Rollup:
// all header on one of its own keys would purge every region's records. No Detour role purges a
// key (a worker's record is deleted, which needs no roll-up). Nor can permissions bound the keys
// (each worker names its own): the bucket holds ProbersPerRegion records of MaxProberRecord for
// each of o.Regions, and refuses a record for a new key when full, while every key it holds may
// still be written (a worker renewing its record replaces it), so a flood of keys keeps new
// workers out until its records expire, ProbersTTL after they were written, but stops no
// worker already in. It is stored in files on a cluster, so that losing the node that leads it
// loses no member and stops no probing.
func ProbersStream(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	records := int64(o.Regions) * ProbersPerRegion
	return jetstream.StreamConfig{
		Name: StreamProbers, Description: "Live prober workers, one heartbeat record per region.worker",
		Subjects: []string{"$KV." + BucketProbers + ".>"}, MaxMsgsPerSubject: 1, MaxAge: ProbersTTL,
		// Room in bytes for each record with its subject: the count binds first.
		MaxMsgs: records, MaxBytes: records * 2 * MaxProberRecord, MaxMsgSize: MaxProberRecord,
		MaxConsumers: -1, Discard: jetstream.DiscardNew,
		Duplicates: ProbersTTL, DenyDelete: true, AllowDirect: true, AllowRollup: false,
		Storage: storage, Replicas: o.Replicas,
	}
}

// Shortfall is a stream found with fewer replicas than configured: losing one node may stop it.
type Shortfall struct {
	Stream     string
	Replicas   int
	Configured int
}

// EnsureStreams creates every stream and the probers' bucket, or updates them to these
// definitions; it never lowers the replicas of an existing one, nor the storage reserved for
// STATE (an operator raises it when STATE outgrows it, and no configuration field sets it), nor
// the bound of the probers' bucket (raised likewise for a region of more workers than it
// holds), nor the bounds an operator raised on ROUTES, DRILLS and ALERTS (bytes, message size,
// routes kept per app, age), nor cancels the denial of deletes or purges an operator set, nor
// changes its storage (which JetStream cannot do either). Nor does it discard by bytes what
// CONFIG, DNS, ROUTES, DRILLS or ALERTS hold: it never lowers their max_bytes, and gives one
// that holds more than its bound (made unbounded by an earlier version) a bound of what it
// holds, which JetStream would otherwise cut to the new bound at once, oldest first; from there
// its oldest messages are discarded as new ones come. (DRILLS, which an earlier version kept
// forever, discards at once the drills older than DrillsRetention.)
// It is what `detour apply` and `detour up` run.
// A stream it cannot read (its group electing a leader, say) is an error: updating it blind
// could lower its replicas.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	// current keeps what an existing stream has that the definition sc must not lower.
	current := func(sc *jetstream.StreamConfig) error {
		cur, err := js.Stream(ctx, sc.Name)
		switch {
		case err == nil:
			info := cur.CachedInfo()
			sc.Replicas, sc.Storage = max(sc.Replicas, info.Config.Replicas), info.Config.Storage
			// Denials an operator set, which JetStream lets no update cancel.
			sc.DenyDelete, sc.DenyPurge = sc.DenyDelete || info.Config.DenyDelete, sc.DenyPurge || info.Config.DenyPurge
			switch sc.Name {
			case StreamState:
				sc.MaxBytes = max(sc.MaxBytes, info.Config.MaxBytes)
			case StreamConfig, StreamDNS:
				sc.MaxBytes = max(sc.MaxBytes, info.Config.MaxBytes, int64(min(info.State.Bytes, math.MaxInt64)))
			case StreamRoutes, StreamDrills, StreamAlerts:
				// An earlier version left them without a byte bound; an operator may have raised
				// one, or kept more of each route or for longer.
				sc.MaxBytes = max(sc.MaxBytes, info.Config.MaxBytes, int64(min(info.State.Bytes, math.MaxInt64)))
				sc.MaxMsgSize = max(sc.MaxMsgSize, info.Config.MaxMsgSize)
				sc.MaxMsgsPerSubject = max(sc.MaxMsgsPerSubject, info.Config.MaxMsgsPerSubject)
				if sc.MaxAge > 0 && info.Config.MaxAge > sc.MaxAge {
					sc.MaxAge = info.Config.MaxAge
				}
			case StreamProbers:
				// An operator raises it for a region of more workers than the bound holds.
				sc.MaxMsgs, sc.MaxBytes = max(sc.MaxMsgs, info.Config.MaxMsgs), max(sc.MaxBytes, info.Config.MaxBytes)
			}
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("ensure stream %s: read its current definition: %w", sc.Name, err)
		}
		return nil
	}
	for _, sc := range Streams(o) {
		if err := current(&sc); err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, unreserved(sc, err))
		}
	}
	// The probers' bucket: one made by an earlier version, or by nats.go's CreateKeyValue, allows
	// roll-ups, and is updated to refuse them.
	pc := ProbersStream(o)
	if err := current(&pc); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, pc); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketProbers, unreserved(pc, err))
	}
	return nil
}

// ProvisionStreams creates, with these definitions, the named streams (every stream and the
// probers' bucket when none is named) that do not exist yet, and leaves existing ones as they are
// (changing them is the operator's, with `detour apply`). It reports the existing ones that have
// fewer replicas than o asks for. Every role runs it at start for the streams it uses, so that
// where its NATS user may create streams whichever needs one first creates it with the
// configured replicas; in deployments/nats/accounts.conf none may, and only the operator's
// detour apply creates them. A stream it cannot create is reported in the error; the others are
// still created. REJECTIONS is not created while an earlier version's CONFIG holds its subjects
// (detour.config.>): EnsureStreams moves them first.
func ProvisionStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions, names ...string) ([]Shortfall, error) {
	o = o.withDefaults()
	var short []Shortfall
	var errs []error
	check := func(name string, create func() error) {
		if len(names) > 0 && !slices.Contains(names, name) {
			return
		}
		cur, err := js.Stream(ctx, name)
		switch {
		case err == nil:
			if n := cur.CachedInfo().Config.Replicas; n < o.Replicas {
				short = append(short, Shortfall{Stream: name, Replicas: n, Configured: o.Replicas})
			}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if err := create(); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				errs = append(errs, fmt.Errorf("create stream %s: %w", name, err))
			}
		default:
			errs = append(errs, fmt.Errorf("open stream %s: %w", name, err))
		}
	}
	for _, sc := range Streams(o) {
		check(sc.Name, func() error {
			if sc.Name == StreamRejections && configHoldsRejections(ctx, js) {
				return nil
			}
			_, err := js.CreateStream(ctx, sc)
			return unreserved(sc, err)
		})
	}
	check(StreamProbers, func() error {
		pc := ProbersStream(o)
		_, err := js.CreateStream(ctx, pc)
		return unreserved(pc, err)
	})
	return short, errors.Join(errs...)
}

// JetStream's error codes for a bound the servers' store cannot reserve beside the other
// streams': in memory, in files.
const (
	errCodeMemoryExceeded  = 10028
	errCodeStorageExceeded = 10047
)

// unreserved explains err, JetStream's answer to making or changing sc, when it refuses a bound
// the servers' store cannot reserve: JetStream reserves each stream's max_bytes on
// max_file_store (max_memory_store for a stream in memory), and the streams an earlier version
// left unbounded (CONFIG, DNS, the probers' bucket) reserved nothing, so a store sized for its
// bounds may hold too little for these.
func unreserved(sc jetstream.StreamConfig, err error) error {
	if code := apiErrorCode(err); code != errCodeMemoryExceeded && code != errCodeStorageExceeded {
		return err
	}
	setting := "max_file_store"
	if sc.Storage == jetstream.MemoryStorage {
		setting = "max_memory_store"
	}
	return fmt.Errorf("the servers' store cannot reserve its bound, %d MiB, beside the other streams' (JetStream reserves each stream's max_bytes): raise %s (see the README's Storage): %w",
		(sc.MaxBytes+1<<20-1)>>20, setting, err)
}

// configHoldsRejections reports whether CONFIG, as an earlier version made it, holds every
// subject of the configuration, the rejections' too.
func configHoldsRejections(ctx context.Context, js jetstream.JetStream) bool {
	cur, err := js.Stream(ctx, StreamConfig)
	return err == nil && slices.Contains(cur.CachedInfo().Config.Subjects, SubjectConfig)
}
