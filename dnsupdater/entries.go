package dnsupdater

import (
	"hash/maphash"
	"iter"
	"slices"
)

// entries maps the wire form of names to their prepared replies, in shards copied on write: a
// table built from the one before shares every shard none of whose names it prepared again,
// so that a version costs in proportion to the names it changed, not to the size of the zones
// (one map of 10,000 names cloned per version was most of what a version cost beside the
// changed answers). A table's entries never change once it is served.
//
// A shard is a short slice of slots, each with its name's hash, rather than a map: a query's
// lookup hashes its name once, picks the shard by the hash and compares the hashes of a few
// slots, where a map of its own per shard hashed the name again and walked the map's header,
// groups and control words first. In a region of 10,000 names each query reads a name the one
// before did not, so the lookup's cost is the cache lines it reads.
type entries struct {
	seed   maphash.Seed
	shards [][]slot
	// owned marks the shards this version copied already (only its builder uses it).
	owned []bool
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
	k := 1
	for k*entriesPerShard < n {
		k *= 2
	}
	return &entries{seed: maphash.MakeSeed(), shards: make([][]slot, k), owned: make([]bool, k)}
}

// next returns entries equal to e that share its shards until they are written.
func (e *entries) next() *entries {
	return &entries{seed: e.seed, shards: slices.Clone(e.shards), owned: make([]bool, len(e.shards))}
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
	s := e.shards[h&uint64(len(e.shards)-1)]
	if i := find(s, h, wire); i >= 0 {
		return s[i].e
	}
	return nil
}

// lookup is get for a wire form held in bytes (a query's), without copying them.
func (e *entries) lookup(wire []byte) *entry {
	h := maphash.Bytes(e.seed, wire)
	s := e.shards[h&uint64(len(e.shards)-1)]
	for i := range s {
		if s[i].hash == h && s[i].wire == string(wire) {
			return s[i].e
		}
	}
	return nil
}

// writable returns the index of the shard of hash h, copied first if e shares it.
func (e *entries) writable(h uint64) int {
	i := int(h & uint64(len(e.shards)-1))
	if !e.owned[i] {
		// A copy with room for a name more: a shard is copied when a name is set in it.
		e.shards[i], e.owned[i] = append(make([]slot, 0, len(e.shards[i])+1), e.shards[i]...), true
	}
	return i
}

func (e *entries) set(wire string, en *entry) {
	h := maphash.String(e.seed, wire)
	i := e.writable(h)
	if j := find(e.shards[i], h, wire); j >= 0 {
		e.shards[i][j].e = en
		return
	}
	e.shards[i] = append(e.shards[i], slot{hash: h, wire: wire, e: en})
}

func (e *entries) del(wire string) {
	h := maphash.String(e.seed, wire)
	if find(e.shards[h&uint64(len(e.shards)-1)], h, wire) < 0 {
		return
	}
	i := e.writable(h)
	j := find(e.shards[i], h, wire)
	e.shards[i] = slices.Delete(e.shards[i], j, j+1)
}

// all yields every name's wire form and entry, in no order.
func (e *entries) all() iter.Seq2[string, *entry] {
	return func(yield func(string, *entry) bool) {
		for _, s := range e.shards {
			for _, sl := range s {
				if !yield(sl.wire, sl.e) {
					return
				}
			}
		}
	}
}
