// Package shards holds the shards of a copy-on-write table in two levels, so that a version
// of the table built from the one before copies the shards it writes and one short array of
// pointers, not an array as long as the shards: with 1,024 shards (10,000 names) a version
// that changed one name copied 1,024 shard headers, the most of what it cost.
package shards

import (
	"slices"
	"sync/atomic"
)

// fanout is how many shards one leaf holds: a version copies the leaves it writes (fanout shard
// headers each) and the top (one pointer per fanout shards).
const fanout = 32

// Array is a power-of-two number of shards of type S, at least fanout. The zero value holds
// none. A version handed out (to readers) must not be written again: Next returns the one to
// write, which shares every leaf and shard until Put copies it.
type Array[S any] struct {
	top []*leaf[S]
	// epoch tells this version's leaves, copied or made by it, from those it shares.
	epoch uint64
}

type leaf[S any] struct {
	epoch uint64
	// owned marks the shards this leaf's version copied already (bit j for shard j).
	owned  uint32
	shards [fanout]S
}

// epochs numbers the versions of every Array, from 1.
var epochs atomic.Uint64

// New returns an Array of at least n shards (a power of two, at least fanout), each made by
// empty, all the caller's to write.
func New[S any](n int, empty func() S) Array[S] {
	k := fanout
	for k < n {
		k *= 2
	}
	a := Array[S]{top: make([]*leaf[S], k/fanout), epoch: epochs.Add(1)}
	for i := range a.top {
		l := &leaf[S]{epoch: a.epoch, owned: ^uint32(0)}
		for j := range l.shards {
			l.shards[j] = empty()
		}
		a.top[i] = l
	}
	return a
}

// Len returns how many shards a holds.
func (a Array[S]) Len() int { return len(a.top) * fanout }

// At returns shard i.
func (a Array[S]) At(i uint64) S { return a.top[i/fanout].shards[i%fanout] }

// Next returns an Array equal to a that shares its leaves and shards until they are put.
func (a Array[S]) Next() Array[S] {
	return Array[S]{top: slices.Clone(a.top), epoch: epochs.Add(1)}
}

// Put returns shard i for a to change, and whether a copied it already; when not, the caller
// must replace *s with its own copy before changing what it holds (the slot itself is a's).
func (a *Array[S]) Put(i uint64) (s *S, copied bool) {
	l := a.top[i/fanout]
	if l.epoch != a.epoch {
		c := *l
		c.epoch, c.owned = a.epoch, 0
		l = &c
		a.top[i/fanout] = l
	}
	bit := uint32(1) << (i % fanout)
	copied, l.owned = l.owned&bit != 0, l.owned|bit
	return &l.shards[i%fanout], copied
}
