package decider

import (
	"context"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// oldBatchSubjects matches where probers published their endpoints' batches before
// events.ProbeBatchSubject: detour.probe.<region>.batch.<prober>, outside the decider's filter
// (events.EndpointProbeSubjects), so NATS never delivers them to it.
const oldBatchSubjects = "detour.probe.*.batch.*"

// oldProberEvery is how often a running decider counts PROBES' messages on oldBatchSubjects.
const oldProberEvery = time.Minute

// watchOldProbers logs, once per subject, a prober that still publishes its batches on
// oldBatchSubjects: at once and then at each tick it reads how many messages PROBES holds on
// each, and a count that grew since the look before is such a prober (batches stored before
// this decider started count for nothing; neither do counts that shrink as PROBES ages them
// out). The deciders fold none of its batched results, so without this its region would go
// stale for them unlogged. It returns when ctx ends.
func watchOldProbers(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, ticks <-chan time.Time) {
	var before map[string]uint64 // nil until a first count
	warned := map[string]bool{}
	for {
		if now, ok := countOldBatches(ctx, js); ok {
			for subject, n := range now {
				if before != nil && n > before[subject] && !warned[subject] {
					warned[subject] = true
					log.Warn().Str("subject", subject).Str("deciders_read", events.EndpointProbeSubjects).
						Msg("a prober older than this decider publishes its batches where no decider reads them; upgrade it")
				}
			}
			before = now
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// countOldBatches returns how many messages PROBES holds on each subject of oldBatchSubjects
// (an empty map for none), or false when PROBES cannot be read.
func countOldBatches(ctx context.Context, js jetstream.JetStream) (map[string]uint64, bool) {
	st, err := js.Stream(ctx, events.StreamProbes)
	if err != nil {
		return nil, false
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(oldBatchSubjects))
	if err != nil {
		return nil, false
	}
	if info.State.Subjects == nil {
		return map[string]uint64{}, true
	}
	return info.State.Subjects, true
}
