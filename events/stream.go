package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamProbes = "PROBES"
	StreamState  = "STATE"
	StreamConfig = "CONFIG"
	StreamDNS    = "DNS"
	StreamRoutes = "ROUTES"
	StreamDrills = "DRILLS"
)

// StreamOptions size the streams for a deployment.
type StreamOptions struct {
	// Replicas is 1 on embedded JetStream and 3 on a cluster. Default 1.
	Replicas int
	// ProbeRetention is how long probe results are kept for replay. Default 24h.
	ProbeRetention time.Duration
	// Memory keeps every stream in memory instead of files (tests and benchmarks).
	Memory bool
}

// Streams returns the definitions of every stream Detour uses.
func Streams(o StreamOptions) []jetstream.StreamConfig {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.ProbeRetention == 0 {
		o.ProbeRetention = 24 * time.Hour
	}
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
	state := base(StreamState, "Append-only transitions of endpoints, pools, edges and overrides", SubjectState)
	config := base(StreamConfig, "Desired configuration, every applied version", SubjectConfig)
	config.MaxMsgsPerSubject = 100
	dns := base(StreamDNS, "Zone changes with their serials", SubjectDNS)
	routes := base(StreamRoutes, "Route tables of each edge proxy", SubjectRoutes)
	routes.MaxMsgsPerSubject = 1000
	drills := base(StreamDrills, "Drill runs: plan, steps, rollback, scorecard", SubjectDrills)
	return []jetstream.StreamConfig{probes, state, config, dns, routes, drills}
}

// EnsureStreams creates the streams, or updates them to these definitions.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, sc := range Streams(o) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}
