package dnsupdater

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
)

// TestTheSerialsFileCoversEveryServedSerialWhileTheRenewerRunsAndTheClockJumps drives 640
// zones through bursts, quiet spells and a clock that steps back and forth, with the renewer
// writing concurrently: whenever cover returns (a version is served), the file a kill -9 would
// leave must reserve every zone's serial.
func TestTheSerialsFileCoversEveryServedSerialWhileTheRenewerRunsAndTheClockJumps(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_800_000_000)
	r := newSerialReserver(t.TempDir(), func() time.Time { return time.Unix(clock.Load(), 0) })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := r.renewDue(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)

	rng := rand.New(rand.NewPCG(1, 2))
	zones := make([]*zone.Zone, 640)
	serials := make([]uint32, len(zones))
	for v := range 400 {
		switch rng.IntN(10) {
		case 0:
			clock.Add(-int64(rng.IntN(120))) // stepped back
		case 1:
			clock.Add(int64(rng.IntN(4000))) // a jump, or a quiet spell
		default:
			clock.Add(int64(rng.IntN(2)))
		}
		now := time.Unix(clock.Load(), 0)
		for i := range zones {
			if v == 0 || rng.IntN(8) == 0 {
				serials[i] = NextSerial(serials[i], now)
			}
			zones[i] = &zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: serials[i]}
		}
		if err := r.cover(zones); err != nil {
			t.Fatal(err)
		}
		marks, err := loadSerialMarks(r.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zones {
			if mark, ok := marks[z.Name]; !ok || serialAfter(z.Serial, mark) {
				t.Fatalf("version %d: %s serves %d, the file on disk reserves %d (present %v)", v, z.Name, z.Serial, mark, ok)
			}
		}
	}
}

// BenchmarkRenewingTheSerialsOf640Zones measures one renewal's write of 640 zones' marks.
func BenchmarkRenewingTheSerialsOf640Zones(b *testing.B) {
	now := int64(1_800_000_000)
	r := newSerialReserver(b.TempDir(), func() time.Time { return time.Unix(now, 0) })
	zones := make([]*zone.Zone, 640)
	for i := range zones {
		zones[i] = &zone.Zone{Name: fmt.Sprintf("z%d.test.", i), Serial: uint32(now)}
	}
	if err := r.cover(zones); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		now += renewWithin + 1
		if err := r.renewDue(); err != nil {
			b.Fatal(err)
		}
	}
}
