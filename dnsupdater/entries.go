package dnsupdater

import (
	"hash/maphash"
	"iter"
	"maps"
)

// entries maps the wire form of names to their prepared replies, in shards copied on write: a
// table built from the one before shares every shard none of whose names it prepared again,
// so that a version costs in proportion to the names it changed, not to the size of the zones
// (one map of 10,000 names cloned per version was most of what a version cost beside the
// changed answers). A table's entries never change once it is served.
type entries struct {
	seed   maphash.Seed
	shards []map[string]*entry
	// owned marks the shards this version copied already (only its builder uses it).
	owned []bool
}

// entriesPerShard is about how many names one shard holds: what one changed name copies.
const entriesPerShard = 16

// newEntries returns empty entries for about n names.
func newEntries(n int) *entries {
	k := 1
	for k*entriesPerShard < n {
		k *= 2
	}
	e := &entries{seed: maphash.MakeSeed(), shards: make([]map[string]*entry, k), owned: make([]bool, k)}
	for i := range e.shards {
		e.shards[i] = map[string]*entry{}
	}
	return e
}

// next returns entries equal to e that share its shards until they are written.
func (e *entries) next() *entries {
	return &entries{seed: e.seed, shards: append([]map[string]*entry(nil), e.shards...), owned: make([]bool, len(e.shards))}
}

func (e *entries) shard(wire string) int {
	return int(maphash.String(e.seed, wire) & uint64(len(e.shards)-1))
}

// get returns the entry of the name of wire form wire, or nil.
func (e *entries) get(wire string) *entry {
	return e.shards[e.shard(wire)][wire]
}

// lookup is get for a wire form held in bytes (a query's), without copying them.
func (e *entries) lookup(wire []byte) *entry {
	return e.shards[int(maphash.Bytes(e.seed, wire)&uint64(len(e.shards)-1))][string(wire)]
}

// writable returns the shard of wire, copied first if e shares it.
func (e *entries) writable(wire string) map[string]*entry {
	i := e.shard(wire)
	if !e.owned[i] {
		e.shards[i], e.owned[i] = maps.Clone(e.shards[i]), true
	}
	return e.shards[i]
}

func (e *entries) set(wire string, en *entry) { e.writable(wire)[wire] = en }

func (e *entries) del(wire string) {
	if e.get(wire) != nil {
		delete(e.writable(wire), wire)
	}
}

// all yields every name's wire form and entry, in no order.
func (e *entries) all() iter.Seq2[string, *entry] {
	return func(yield func(string, *entry) bool) {
		for _, s := range e.shards {
			for wire, en := range s {
				if !yield(wire, en) {
					return
				}
			}
		}
	}
}
