package prober

import (
	"testing"

	"github.com/detourdev/detour/events"
)

// BenchmarkEncodeResult compares the hand encoder with encoding/json (through events.New and
// Envelope.Encode, what publishing would cost without it) on the same result.
func BenchmarkEncodeResult(b *testing.B) {
	r := sampleResult()
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := appendEnvelope(make([]byte, 0, 512), events.TypeProbeCompleted, r.ID, "prober/eu/p1", r.At,
				func(b []byte) []byte { return appendResult(b, &r) })
			if len(buf) == 0 {
				b.Fatal("empty")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := events.New(events.TypeProbeCompleted, "prober/eu/p1", r.At, r)
			if err != nil {
				b.Fatal(err)
			}
			if len(e.Encode()) == 0 {
				b.Fatal("empty")
			}
		}
	})
}
