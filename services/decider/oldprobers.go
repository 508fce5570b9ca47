package decider

import (
	"context"
	"errors"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// oldBatchSubjects matches where probers published their endpoints' batches before
// events.ProbeBatchSubject: detour.probe.<region>.batch.<prober>, outside the decider's filter
// (events.EndpointProbeSubjects), so NATS never delivers them to it.
const oldBatchSubjects = "detour.probe.*.batch.*"

// oldProberEvery is how often a running decider counts PROBES' messages on oldBatchSubjects.
const oldProberEvery = time.Minute

// oldProberWait bounds one look at PROBES.
const oldProberWait = 5 * time.Second

// watchOldProbers logs a prober that still publishes its batches on oldBatchSubjects: at once
// and then at each tick it reads the last message PROBES holds on them, and one stored since the
// look before is such a prober's, whose subject it logs once (batches stored before this decider
// started count for nothing; neither does a last message that PROBES aged out). One message a
// look, never a count per subject: a prober's credentials may publish on any subject of its
// region, and PROBES keeps a message on each of a million of them within its bound, which a
// count would hold in memory and log a line each; a look costs one read and at most one line,
// and of several old probers each is named at a look its batch is the last stored at. It
// returns when ctx ends.
func watchOldProbers(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, ticks <-chan time.Time) {
	var before uint64 // the highest sequence seen on oldBatchSubjects, 0 for none
	first := true
	warned := map[string]bool{}
	for {
		if subject, seq, ok := lastOldBatch(ctx, js.Conn()); ok {
			if !first && seq > before && !warned[subject] && len(warned) < maxOldProbers {
				warned[subject] = true
				log.Warn().Str("subject", subject).Str("deciders_read", events.EndpointProbeSubjects).
					Msg("a prober older than this decider publishes its batches where no decider reads them; upgrade it")
			}
			// Never lowered: a replica behind the leader may answer an older last message.
			before, first = max(before, seq), false
		}
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
	}
}

// maxOldProbers bounds the subjects watchOldProbers names, and so what it keeps of them.
const maxOldProbers = 1000

// lastOldBatch returns the subject and the stream sequence of the last message PROBES holds on
// oldBatchSubjects (0 for none), by one direct get, or false when PROBES cannot be read.
func lastOldBatch(ctx context.Context, nc *nats.Conn) (string, uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, oldProberWait)
	defer cancel()
	r, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+events.StreamProbes, []byte(`{"last_by_subj":"`+oldBatchSubjects+`"}`))
	if err != nil {
		return "", 0, false
	}
	m, _, _, err := events.ParseDirectGet(r.Header, r.Data)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return "", 0, true
	case err != nil || m == nil:
		return "", 0, false
	}
	return m.Subject, m.Sequence, true
}
