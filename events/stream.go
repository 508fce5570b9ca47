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
	StreamDNS    = "DNS"
	StreamRoutes = "ROUTES"
	StreamDrills = "DRILLS"
	StreamAlerts = "ALERTS"
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

// Storage bounds. PROBES holds facts that can be sampled away: it is bounded by bytes and message
// size and discards its oldest results. STATE holds transitions, which cannot: it has storage of
// its own reserved (JetStream reserves a stream's max_bytes at creation), so a flood of results
// can never fill the store and stop transitions, and when even that is full appends fail loudly
// instead of discarding history.
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
		o.StateReserve = DefaultStateReserve
		if o.Memory {
			o.StateReserve /= memoryShare
		}
	}
	return o
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
	config := base(StreamConfig, "Desired configuration, every applied version", SubjectConfig)
	config.MaxMsgsPerSubject = 100
	dns := base(StreamDNS, "Zone changes with their serials", SubjectDNS)
	routes := base(StreamRoutes, "Route tables of each edge proxy", SubjectRoutes)
	routes.MaxMsgsPerSubject = 1000
	drills := base(StreamDrills, "Drill runs: plan, steps, rollback, scorecard", SubjectDrills)
	alerts := base(StreamAlerts, "Every alert delivery attempt, delivered or not", SubjectAlerts)
	alerts.MaxAge = 90 * 24 * time.Hour
	return []jetstream.StreamConfig{probes, state, config, dns, routes, drills, alerts}
}

// ProbersStream returns the definition of the stream of the probers' membership bucket: the
// stream nats.go's CreateKeyValue makes for a bucket of History 1 and TTL ProbersTTL, but
// refusing roll-ups. A prober's NATS user may write the keys of its own region, and permissions
// look at subjects, never at headers: on a bucket that allows them, a Nats-Rollup: all header on
// one of its own keys would purge every region's records. No Detour role purges a key (a
// worker's record is deleted, which needs no roll-up). It is stored in files on a cluster, so
// that losing the node that leads it loses no member and stops no probing.
func ProbersStream(o StreamOptions) jetstream.StreamConfig {
	o = o.withDefaults()
	storage := jetstream.FileStorage
	if o.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name: StreamProbers, Description: "Live prober workers, one heartbeat record per region.worker",
		Subjects: []string{"$KV." + BucketProbers + ".>"}, MaxMsgsPerSubject: 1, MaxAge: ProbersTTL,
		MaxMsgs: -1, MaxBytes: -1, MaxMsgSize: -1, MaxConsumers: -1, Discard: jetstream.DiscardNew,
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
// changes its storage (which JetStream cannot). It is what `detour apply` and `detour up` run.
// A stream it cannot read (its group electing a leader, say) is an error: updating it blind
// could lower its replicas.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	// current keeps what an existing stream has that the definitions must not lower; maxBytes
	// is nil where the definition's bound is the one to keep.
	current := func(name string, replicas *int, storage *jetstream.StorageType, maxBytes *int64) error {
		cur, err := js.Stream(ctx, name)
		switch {
		case err == nil:
			c := cur.CachedInfo().Config
			*replicas, *storage = max(*replicas, c.Replicas), c.Storage
			if maxBytes != nil {
				*maxBytes = max(*maxBytes, c.MaxBytes)
			}
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("ensure stream %s: read its current definition: %w", name, err)
		}
		return nil
	}
	for _, sc := range Streams(o) {
		var reserve *int64
		if sc.Name == StreamState {
			reserve = &sc.MaxBytes
		}
		if err := current(sc.Name, &sc.Replicas, &sc.Storage, reserve); err != nil {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	// The probers' bucket: one made by an earlier version, or by nats.go's CreateKeyValue, allows
	// roll-ups, and is updated to refuse them.
	pc := ProbersStream(o)
	if err := current(StreamProbers, &pc.Replicas, &pc.Storage, nil); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, pc); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", BucketProbers, err)
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
// still created.
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
		check(sc.Name, func() error { _, err := js.CreateStream(ctx, sc); return err })
	}
	check(StreamProbers, func() error { _, err := js.CreateStream(ctx, ProbersStream(o)); return err })
	return short, errors.Join(errs...)
}
