package dnsupdater

import (
	"hash/maphash"
	"iter"
	"slices"

	"github.com/detourdev/detour/dnsupdater/internal/shards"
)

// entries maps the wire form of names to their prepared replies, in shards copied on write: a
// table built from the one before shares every shard none of whose names it prepared again,
// so that a version costs in proportion to the names it changed, not to the size of the zones
// (one map of 10,000 names cloned per version was most of what a version cost beside the
// changed answers). The shards are in two levels (package shards), so that a version copies
// one short array of pointers and the leaves it writes, not a header per shard. A table's
// entries never change once it is served.
//
// A shard is a short slice of slots, each with its name's hash, rather than a map: a query's
// lookup hashes its name once, picks the shard by the hash and compares the hashes of a few
// slots, where a map of its own per shard hashed the name again and walked the map's header,
// groups and control words first. In a region of 10,000 names each query reads a name the one
// before did not, so the lookup's cost is the cache lines it reads.
type entries struct {
	seed   maphash.Seed
	shards shards.Array[[]slot]
}

// slot is one name of a shard: its hash, its wire form and its entry.
type slot struct {
	hash uint64
	wire string
	e    *entry
}

// entriesPerShard is about how many names one shard holds: what one changed name copies.
const entriesPerShard = 16

// newEntries returns empty entries for about n names.
func newEntries(n int) *entries {
	return &entries{seed: maphash.MakeSeed(), shards: shards.New(n/entriesPerShard, func() []slot { return nil })}
}

// next returns entries equal to e that share its shards until they are written.
func (e *entries) next() *entries {
	return &entries{seed: e.seed, shards: e.shards.Next()}
}

// shard returns the shard of hash h.
func (e *entries) shard(h uint64) []slot {
	return e.shards.At(h & uint64(e.shards.Len()-1))
}

// find returns the index in its shard of the name of wire form wire and hash h, or -1.
func find(s []slot, h uint64, wire string) int {
	for i := range s {
		if s[i].hash == h && s[i].wire == wire {
			return i
		}
	}
	return -1
}

// get returns the entry of the name of wire form wire, or nil.
func (e *entries) get(wire string) *entry {
	h := maphash.String(e.seed, wire)
	s := e.shard(h)
	if i := find(s, h, wire); i >= 0 {
		return s[i].e
	}
	return nil
}

// lookup is get for a wire form held in bytes (a query's), without copying them.
func (e *entries) lookup(wire []byte) *entry {
	h := maphash.Bytes(e.seed, wire)
	s := e.shard(h)
	for i := range s {
		if s[i].hash == h && s[i].wire == string(wire) {
			return s[i].e
		}
	}
	return nil
}

// writable returns the shard of hash h, copied first if e shares it.
func (e *entries) writable(h uint64) *[]slot {
	s, copied := e.shards.Put(h & uint64(e.shards.Len()-1))
	if !copied {
		// A copy with room for a name more: a shard is copied when a name is set in it.
		*s = append(make([]slot, 0, len(*s)+1), *s...)
	}
	return s
}

func (e *entries) set(wire string, en *entry) {
	h := maphash.String(e.seed, wire)
	s := e.writable(h)
	if j := find(*s, h, wire); j >= 0 {
		(*s)[j].e = en
		return
	}
	*s = append(*s, slot{hash: h, wire: wire, e: en})
}

func (e *entries) del(wire string) {
	h := maphash.String(e.seed, wire)
	if find(e.shard(h), h, wire) < 0 {
		return
	}
	s := e.writable(h)
	j := find(*s, h, wire)
	*s = slices.Delete(*s, j, j+1)
}

// all yields every name's wire form and entry, in no order.
func (e *entries) all() iter.Seq2[string, *entry] {
	return func(yield func(string, *entry) bool) {
		for i := range e.shards.Len() {
			for _, sl := range e.shards.At(uint64(i)) {
				if !yield(sl.wire, sl.e) {
					return
				}
			}
		}
	}
}
