package dnsupdater

import (
	"fmt"
	"maps"
	"testing"
)

// TestEntriesCopiedOnWriteActLikeAMapAndLeaveEarlierVersionsAsTheyWere runs random writes
// through successive versions of the sharded entries and, beside them, of a plain map copied
// whole per version (the peer), and checks after each version that both hold the same names,
// and that every earlier version still holds what it held when it was built.
func TestEntriesCopiedOnWriteActLikeAMapAndLeaveEarlierVersionsAsTheyWere(t *testing.T) {
	ops := make([]byte, 0, 4096)
	for i := range cap(ops) {
		ops = append(ops, byte(i*7919>>3))
	}
	checkEntries(t, ops)
}

// FuzzEntries is the test above over operations the fuzzer draws.
func FuzzEntries(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 255, 4, 5, 128, 6})
	f.Fuzz(func(t *testing.T, ops []byte) { checkEntries(t, ops) })
}

// checkEntries reads ops two bytes at a time: the first picks set, delete or a new version,
// the second a name among 200 (and its entry).
func checkEntries(t *testing.T, ops []byte) {
	es := newEntries(100)
	peer := map[string]*entry{}
	pool := make([]*entry, 256)
	for i := range pool {
		pool[i] = &entry{zone: fmt.Sprint(i)}
	}
	type version struct {
		es   *entries
		peer map[string]*entry
	}
	var versions []version
	for i := 0; i+1 < len(ops); i += 2 {
		name := fmt.Sprintf("\x04n%03d\x00", int(ops[i+1])%200)
		switch ops[i] % 8 {
		case 0:
			versions = append(versions, version{es, peer})
			es, peer = es.next(), maps.Clone(peer)
		case 1, 2:
			es.del(name)
			delete(peer, name)
		default:
			es.set(name, pool[ops[i+1]])
			peer[name] = pool[ops[i+1]]
		}
	}
	versions = append(versions, version{es, peer})
	for k, v := range versions {
		got := maps.Collect(v.es.all())
		if !maps.Equal(got, v.peer) {
			t.Fatalf("version %d holds %d names, the map %d; they differ", k, len(got), len(v.peer))
		}
		for i := range 200 {
			name := fmt.Sprintf("\x04n%03d\x00", i)
			if got, want := v.es.get(name), v.peer[name]; got != want {
				t.Fatalf("version %d: get %q = %v, the map has %v", k, name, got, want)
			}
			if got, want := v.es.lookup([]byte(name)), v.peer[name]; got != want {
				t.Fatalf("version %d: lookup %q = %v, the map has %v", k, name, got, want)
			}
		}
	}
}
