package shards

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// contents lists every shard's values.
func contents(a Array[[]int]) [][]int {
	out := make([][]int, a.Len())
	for i := range out {
		out[i] = slices.Clone(a.At(uint64(i)))
	}
	return out
}

// checkVersions writes random versions of an Array of slices, each built from the one before
// (or, now and then, again from an older one), against a model that copies every shard, and
// checks that no version handed out changes.
func checkVersions(t *testing.T, seed1, seed2 uint64, n, versions int) {
	rng := rand.New(rand.NewPCG(seed1, seed2))
	type kept struct {
		a    Array[[]int]
		want [][]int
	}
	first := New(n, func() []int { return nil })
	if first.Len() < n || first.Len() < fanout || first.Len()&(first.Len()-1) != 0 {
		t.Fatalf("New(%d) holds %d shards, want a power of two at least %d and %d", n, first.Len(), n, fanout)
	}
	all := []kept{{first, contents(first)}}
	for v := range versions {
		base := all[len(all)-1]
		if rng.IntN(8) == 0 {
			base = all[rng.IntN(len(all))]
		}
		a, model := base.a.Next(), contents(base.a)
		for range rng.IntN(6) {
			i := uint64(rng.IntN(a.Len()))
			s, copied := a.Put(i)
			if !copied {
				*s = slices.Clone(*s)
			}
			*s = append(*s, v)
			model[i] = append(model[i], v)
		}
		if got := contents(a); !slices.EqualFunc(got, model, slices.Equal) {
			t.Fatalf("version %d differs from the model", v)
		}
		all = append(all, kept{a, model})
		for k, old := range all {
			if got := contents(old.a); !slices.EqualFunc(got, old.want, slices.Equal) {
				t.Fatalf("after version %d, version %d changed", v, k)
			}
		}
	}
}

func TestNoVersionChangesOnceALaterOneIsWritten(t *testing.T) {
	for _, n := range []int{0, 1, 33, 1000} {
		checkVersions(t, uint64(n), 1, n, 60)
	}
}

func FuzzNoVersionChangesOnceALaterOneIsWritten(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint16(40))
	f.Add(uint64(3), uint64(4), uint16(300))
	f.Fuzz(func(t *testing.T, a, b uint64, n uint16) {
		checkVersions(t, a, b, int(n%2048), 30)
	})
}

func TestPutCopiesALeafOncePerVersion(t *testing.T) {
	a := New(100, func() map[int]bool { return map[int]bool{} })
	b := a.Next()
	s, copied := b.Put(5)
	if copied {
		t.Fatal("the first Put of a shard in a new version says it was copied")
	}
	*s = maps.Clone(*s)
	(*s)[1] = true
	if _, copied := b.Put(5); !copied {
		t.Fatal("the second Put of a shard in one version says it was not copied")
	}
	if len(a.At(5)) != 0 {
		t.Fatal("a shard changed in the version before")
	}
	if a.top[5/fanout] == b.top[5/fanout] || a.top[64/fanout] != b.top[64/fanout] {
		t.Fatal("want the written leaf copied and the others shared")
	}
}
