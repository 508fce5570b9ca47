package dnsupdater

import (
	"context"
	"slices"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
)

// readBackTimeout bounds the read of one zone's subject: a stream that does not answer by then
// is read again after a wait (see readBack).
const readBackTimeout = 5 * time.Second

// readBackRetry is the first wait before the zones not read yet are read again; each failure in
// a row doubles it, up to maxReadBackRetry.
const (
	readBackRetry    = time.Second
	maxReadBackRetry = 30 * time.Second
)

// readBackHandOver is how often a read of many zones hands over what it has read so far: a zone
// whose serial must pass a recorded one does not wait for the zones read after it.
const readBackHandOver = time.Second

// readBack reads, once in a run for every zone served, what the DNS stream records of it (see
// readHistory): the zones of the table at start, and each zone a reload adds, new to the
// configuration or coming back, as soon as it is served. It hands the refresher on read each
// zone's IXFR history up to its serial, and the newest version recorded under the server's name
// before this run, whose serial the zone must pass (see passServed). While the stream does not
// answer (NATS down or slow at start, a leader elected), the server answers from what it has and
// the zones not read yet are read again after readBackRetry, doubling up to maxReadBackRetry,
// and at once when poked (the state stream read to its end: NATS answers; a reload: a zone may
// be new), until ctx ends. It logs the first failure of a run of them and the read that ends it.
func (s *Server) readBack(ctx context.Context, poke <-chan struct{}, read chan<- histories) {
	done := map[string]bool{}
	// after is the zone whose read failed last: the next attempt starts with the zones after
	// it, so that none holds back the others.
	after := ""
	var retry time.Duration
	var failures int
	var failingSince time.Time
	for {
		var pending []*zone.Zone
		for _, z := range s.table.Load().zones {
			if !done[z.Name] {
				pending = append(pending, z)
			}
		}
		if i := slices.IndexFunc(pending, func(z *zone.Zone) bool { return z.Name == after }); i >= 0 {
			pending = slices.Concat(pending[i+1:], pending[:i+1])
		}
		n, failedZone, err := s.readZones(ctx, pending, done, read)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil && failures == 0:
			failures, failingSince, retry, after = 1, time.Now(), readBackRetry, failedZone
			s.log.Warn().Err(err).Str("zone", failedZone).Int("zones_left", len(pending)-n).Dur("retry_in", retry).
				Msg("ixfr history not read; trying again until the stream answers, meanwhile secondaries behind get the whole zone, and a serial an earlier run served is not known")
		case err != nil:
			failures, retry, after = failures+1, min(2*retry, maxReadBackRetry), failedZone
		case failures > 0:
			// Read, or nothing left to read (a reload removed the zones not read yet): the run of
			// failures ends, so that the next outage is logged and retried from readBackRetry.
			if n > 0 {
				s.log.Info().Int("failed_attempts", failures).Dur("after", time.Since(failingSince)).Int("zones", n).
					Msg("ixfr history and serials served before read from the stream once it answered")
			}
			failures, after = 0, ""
		}
		var wait <-chan time.Time
		if err != nil {
			wait = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-poke:
		case <-wait:
		}
	}
}

// readZones reads what the DNS stream records of zones in turn, until one fails, marks each read
// in done, and hands what it read to read, every readBackHandOver and at the end. It returns how
// many zones it read, and the zone that failed with the error.
func (s *Server) readZones(ctx context.Context, zones []*zone.Zone, done map[string]bool, read chan<- histories) (int, string, error) {
	out := histories{steps: map[string][]zone.Delta{}, served: map[string]recorded{}}
	handOver := func() {
		if len(out.served) == 0 && len(out.steps) == 0 {
			return
		}
		select {
		case read <- out:
		case <-ctx.Done():
		}
		out = histories{steps: map[string][]zone.Delta{}, served: map[string]recorded{}}
	}
	defer handOver()
	handed := time.Now()
	for i, z := range zones {
		rctx, cancel := context.WithTimeout(ctx, readBackTimeout)
		h, served, err := readHistory(rctx, s.o.JS, z.Name, s.self(), z.Serial)
		cancel()
		if err != nil {
			return i, z.Name, err
		}
		done[z.Name] = true
		if served != nil {
			out.served[z.Name] = *served
		}
		if len(h) > 0 {
			out.steps[z.Name] = h
			s.log.Info().Str("zone", z.Name).Int("versions", len(h)).Uint32("oldest_serial", h[0].From).Msg("ixfr history read from the stream")
		}
		if time.Since(handed) >= readBackHandOver {
			handOver()
			handed = time.Now()
		}
	}
	return len(zones), "", nil
}
