package zone

import (
	"hash/maphash"
	"iter"
	"maps"

	"github.com/detourdev/detour/dnsupdater/internal/shards"
)

// Nodes maps a zone's canonical names to their nodes, in shards copied on write: a version
// Replace builds from the one before shares every shard none of whose names it replaced, so a
// version costs in proportion to the answers that changed, not to the size of the zone (a map
// of 10,000 names cloned per version was the most of what Replace cost). The shards are in two
// levels (package shards): a version copies one short array of pointers and the leaves it
// writes, not a pointer per shard. The nodes of a zone never change once it is projected. The
// zero value holds no name.
type Nodes struct {
	seed   maphash.Seed
	shards shards.Array[map[string]*Node]
	n      int
}

// nodesPerShard is about how many names one shard holds: what one replaced name copies.
const nodesPerShard = 16

// newNodes returns empty Nodes for about n names.
func newNodes(n int) Nodes {
	return Nodes{seed: maphash.MakeSeed(), shards: shards.New(n/nodesPerShard, func() map[string]*Node { return map[string]*Node{} })}
}

// next returns Nodes equal to ns that share its shards until they are written.
func (ns Nodes) next() Nodes {
	return Nodes{seed: ns.seed, shards: ns.shards.Next(), n: ns.n}
}

func (ns Nodes) shard(name string) uint64 {
	return maphash.String(ns.seed, name) & uint64(ns.shards.Len()-1)
}

// Get returns the node of name, or nil.
func (ns Nodes) Get(name string) *Node {
	if ns.shards.Len() == 0 {
		return nil
	}
	return ns.shards.At(ns.shard(name))[name]
}

// Len returns how many names ns holds.
func (ns Nodes) Len() int { return ns.n }

// All yields every name and its node, in no order.
func (ns Nodes) All() iter.Seq2[string, *Node] {
	return func(yield func(string, *Node) bool) {
		for i := range ns.shards.Len() {
			for name, n := range ns.shards.At(uint64(i)) {
				if !yield(name, n) {
					return
				}
			}
		}
	}
}

// set makes n the node of name, copying its shard first if ns shares it. Only the builder of
// a version calls it, before the version is handed out.
func (ns *Nodes) set(name string, n *Node) {
	s, copied := ns.shards.Put(ns.shard(name))
	if !copied {
		*s = maps.Clone(*s)
	}
	if _, ok := (*s)[name]; !ok {
		ns.n++
	}
	(*s)[name] = n
}
