package decider

import "testing"

// BenchmarkNewIndex measures building the index of the 10,000 endpoint fleet, as a start and
// every configuration version do.
func BenchmarkNewIndex(b *testing.B) {
	c := fleet(b)
	b.ReportAllocs()
	for b.Loop() {
		newIndex(c)
	}
}
