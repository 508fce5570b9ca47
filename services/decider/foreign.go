package decider

import (
	"time"

	"github.com/detourdev/detour/events"
	"github.com/rs/zerolog"
)

// foreignLogEvery is the least time between two log lines about dropped foreign results, so a
// flood of forged results costs one line per period, not one per result.
const foreignLogEvery = 10 * time.Second

// foreignLog reports results dropped for their region: the first at once, then at most one line
// per foreignLogEvery with how many were dropped since the last line.
type foreignLog struct {
	last    time.Time
	dropped int
}

func (f *foreignLog) drop(log *zerolog.Logger, now time.Time, payloadRegion, subjectRegion string) {
	f.dropped++
	if !f.last.IsZero() && now.Sub(f.last) < foreignLogEvery {
		return
	}
	log.Warn().Str("region", payloadRegion).Str("subject_region", subjectRegion).Int("dropped", f.dropped).
		Msg("probe results from an unconfigured or mismatched region dropped")
	f.last, f.dropped = now, 0
}

// probeRegion returns the region token of a PROBES subject (detour.probe.<region>.…), or "".
func probeRegion(subject string) string {
	if t := events.SplitSubject(subject, "detour.probe"); len(t) > 0 {
		return t[0]
	}
	return ""
}
