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

// oldBatchSubjects matches where probers of region ("*": of every region) published their
// endpoints' batches before events.ProbeBatchSubject: detour.probe.<region>.batch.<prober>,
// outside the decider's filter (events.EndpointProbeSubjects), so NATS never delivers them to it.
func oldBatchSubjects(region string) string { return "detour.probe." + region + ".batch.*" }

// oldProberEvery is how often a running decider looks at PROBES' messages on oldBatchSubjects.
const oldProberEvery = time.Minute

// oldProberAgain is how long after it logged a subject watchOldProbers may log it again.
const oldProberAgain = time.Hour

// oldProberWait bounds one look at PROBES.
const oldProberWait = 5 * time.Second

// watchOldProbers logs a prober that still publishes its batches on oldBatchSubjects: at once
// and then at each tick it reads, for each probing region regions returns (every region at once
// when it returns none), the last message PROBES holds on the region's old batch subjects, and
// one stored since the look before is such a prober's, whose subject it logs, once an hour at
// most (batches stored before this decider started, or before it looked at their region first,
// count for nothing; neither does a last message that PROBES aged out). One message a region a
// look, never a count per subject: a prober's credentials may publish on any subject of its
// region, and PROBES keeps a message on each of a million of them within its bound, which a
// count would hold in memory and log a line each; a look costs one read and at most one line a
// region, what it keeps of the subjects it logged goes after an hour, and a region's
// credentials can hide, publishing on the old subjects, the old probers of their region alone.
// Of several old probers of one region, each is named at a look its batch is the last of its
// region stored at. It returns when ctx ends.
func watchOldProbers(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, regions func() []string, ticks <-chan time.Time) {
	w := newOldProbers(js.Conn(), log, regions)
	var now time.Time // the tick's; the first look, at start, logs nothing
	for {
		w.look(ctx, now)
		select {
		case <-ctx.Done():
			return
		case now = <-ticks:
		}
	}
}

// oldProbers is what watchOldProbers keeps from one look to the next.
type oldProbers struct {
	nc      *nats.Conn
	log     zerolog.Logger
	regions func() []string
	before  map[string]uint64    // by region looked at: the highest sequence seen on its old subjects, 0 for none
	logged  map[string]time.Time // by subject: when it was logged, for oldProberAgain
}

func newOldProbers(nc *nats.Conn, log zerolog.Logger, regions func() []string) *oldProbers {
	return &oldProbers{nc: nc, log: log, regions: regions, before: map[string]uint64{}, logged: map[string]time.Time{}}
}

// look reads the last message of each region's old batch subjects, at now, and logs its subject
// when it was stored since the region's look before and not logged within oldProberAgain.
func (w *oldProbers) look(ctx context.Context, now time.Time) {
	looked := map[string]uint64{}
	for _, region := range lookedRegions(w.regions()) {
		seen, known := w.before[region]
		subject, seq, ok := lastOldBatch(ctx, w.nc, region)
		if !ok {
			if known {
				looked[region] = seen
			}
			continue
		}
		if known && seq > seen && now.Sub(w.logged[subject]) >= oldProberAgain {
			w.logged[subject] = now
			w.log.Warn().Str("subject", subject).Str("deciders_read", events.EndpointProbeSubjects).
				Msg("a prober older than this decider publishes its batches where no decider reads them; upgrade it")
		}
		// Never lowered: a replica behind the leader may answer an older last message.
		looked[region] = max(seen, seq)
	}
	w.before = looked
	for subject, at := range w.logged {
		if now.Sub(at) >= oldProberAgain {
			delete(w.logged, subject)
		}
	}
}

// lookedRegions are the regions whose old batch subjects watchOldProbers reads apart: the probing
// regions, or every region at once ("*") when none is configured.
func lookedRegions(probing []string) []string {
	if len(probing) == 0 {
		return []string{"*"}
	}
	return probing
}

// lastOldBatch returns the subject and the stream sequence of the last message PROBES holds on
// region's old batch subjects (0 for none), by one direct get, or false when PROBES cannot be
// read.
func lastOldBatch(ctx context.Context, nc *nats.Conn, region string) (string, uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, oldProberWait)
	defer cancel()
	r, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+events.StreamProbes, []byte(`{"last_by_subj":"`+oldBatchSubjects(region)+`"}`))
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
