package dnsupdater

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
)

// readBackTimeout bounds each request of a read of the DNS stream: a stream that does not answer
// one by then is read again after a wait (see readBack).
const readBackTimeout = 5 * time.Second

// readBackBatch is how many messages one request of a read of every subject of the server asks
// for (see readZones).
const readBackBatch = 1024

// readBackAsks is how many zones a read of the zones one by one reads at once, so that a slow
// link costs a round trip for readBackAsks zones rather than for each.
const readBackAsks = 64

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
// historyFold): the zones of the table at start, and each zone a reload adds, new to the
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

// readZones reads what the DNS stream records of zones, marks each read in done, and hands what
// it read to read, every readBackHandOver and at the end. It returns how many zones it read, and
// the zone that failed with the error. Its cost hardly grows with the zones: one request tells
// how many messages each of the server's subjects holds, a zone whose subject holds none costs
// nothing more, and the others are read either all together, by batches of readBackBatch
// messages of every subject of the server (when the stream holds little more of them than the
// zones' reads would look at), or each by one request (a few for a history longer than
// maxHistoryReads), readBackAsks at once. A zone with a history also reads the other writers'
// subjects of it back to the history's first serial (see peerVersions), each by one request
// as a rule. Each request may wait readBackTimeout, so that a slow link, where one zone's
// history takes longer than that, still finishes.
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
	if len(zones) == 0 {
		return 0, "", nil
	}
	self := s.self()
	r, err := openReads(ctx, s.o.JS, self.token)
	if err != nil {
		return 0, zones[0].Name, err
	}
	defer r.close()
	n, handed := 0, time.Now()
	take := func(z *zone.Zone, h []zone.Delta, served *recorded) {
		done[z.Name] = true
		n++
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
	var swept map[string]*historyFold
	if r.sweeps(zones, self.token) {
		folds, err := r.sweep(ctx, zones, self)
		if err != nil {
			return 0, zones[0].Name, err
		}
		swept = make(map[string]*historyFold, len(folds))
		for i, z := range zones {
			swept[z.Name] = folds[i]
		}
	}
	type zoneRead struct {
		z      *zone.Zone
		h      []zone.Delta
		served *recorded
		err    error
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next, results := make(chan *zone.Zone), make(chan zoneRead)
	go func() {
		defer close(next)
		for _, z := range zones {
			select {
			case next <- z:
			case <-rctx.Done():
				return
			}
		}
	}()
	own := peerSelf{id: s.id, writer: s.writer, key: s.idKey}
	var readers sync.WaitGroup
	for range readBackAsks {
		readers.Go(func() {
			for z := range next {
				var res zoneRead
				if f := swept[z.Name]; f != nil {
					h, served := f.result()
					res = zoneRead{z: z, h: h, served: served}
				} else {
					h, served, err := r.history(rctx, z.Name, self, z.Serial)
					res = zoneRead{z: z, h: h, served: served, err: err}
				}
				if res.err == nil && len(res.h) > 0 {
					// Before the history is served: an IXFR must not step from a serial another
					// server recorded with other records (see versionDigests), nor from one it may
					// have recorded before the versions read, which leaves no history.
					var back bool
					back, res.err = r.peerVersions(rctx, z.Name, own, res.h[0].From, func(v peerVersion) {
						s.digests.other(z.Name, v.writer, v.serial, v.digest)
					})
					if !back {
						s.log.Info().Str("zone", z.Name).Uint32("oldest_serial", res.h[0].From).Int("read", maxHistoryReads).
							Msg("ixfr history not kept: another dns server recorded more of this zone since its oldest serial than a start reads, which serials of it with which records is not known; secondaries behind get the whole zone once")
						res.h = nil
					}
				}
				select {
				case results <- res:
				case <-rctx.Done():
					return
				}
			}
		})
	}
	go func() { readers.Wait(); close(results) }()
	var failed string
	for res := range results {
		switch {
		case res.err == nil:
			take(res.z, res.h, res.served)
		case err == nil:
			failed, err = res.z.Name, res.err
			cancel() // the zones not read yet are read at the next try
		}
	}
	return n, failed, err
}
