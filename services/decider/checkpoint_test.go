package decider

import (
	"testing"
	"time"
)

// TestACheckpointIsWholeOnlyWithEveryOneOfItsParts feeds the parts a replica may see of one
// checkpoint index: the same part stored twice (written again once the duplicate window had
// passed), or parts of two replicas' checkpoints of the index split otherwise. Only every part
// of one checkpoint makes it whole; one taken for whole too early lets the decider replace
// batches that no complete checkpoint restates, and readers lose their transitions.
func TestACheckpointIsWholeOnlyWithEveryOneOfItsParts(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	type part struct{ part, parts int }
	tests := []struct {
		name  string
		seen  []part
		whole bool
	}{
		{name: "every part", seen: []part{{0, 2}, {1, 2}}, whole: true},
		{name: "every part, in another order", seen: []part{{2, 3}, {0, 3}, {1, 3}}, whole: true},
		{name: "one part stored twice", seen: []part{{0, 2}, {0, 2}}},
		{name: "two replicas' parts split otherwise", seen: []part{{0, 2}, {0, 3}, {1, 3}}},
		{name: "the whole of one of two splits", seen: []part{{0, 2}, {0, 3}, {1, 2}}, whole: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b batches
			b.saw(40, 900, "b40", now)
			for _, p := range tt.seen {
				b.sawCheckpoint(40, p.part, p.parts, now)
			}
			if whole := b.cpKnown && b.cpIndex == 40; whole != tt.whole {
				t.Errorf("after parts %v: checkpoint of batch 40 whole = %v, want %v", tt.seen, whole, tt.whole)
			}
			if b.behind() == tt.whole {
				t.Errorf("after parts %v: behind = %v, want %v", tt.seen, b.behind(), !tt.whole)
			}
		})
	}
}
