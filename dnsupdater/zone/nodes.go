package zone

import (
	"hash/maphash"
	"iter"
	"maps"
)

// Nodes maps a zone's canonical names to their nodes, in shards copied on write: a version
// Replace builds from the one before shares every shard none of whose names it replaced, so a
// version costs in proportion to the answers that changed, not to the size of the zone (a map
// of 10,000 names cloned per version was the most of what Replace cost). The nodes of a zone
// never change once it is projected. The zero value holds no name.
type Nodes struct {
	seed   maphash.Seed
	shards []map[string]*Node
	// owned marks the shards this version copied already (only its builder uses it).
	owned []bool
	n     int
}

// nodesPerShard is about how many names one shard holds: what one replaced name copies.
const nodesPerShard = 16

// newNodes returns empty Nodes for about n names.
func newNodes(n int) Nodes {
	k := 1
	for k*nodesPerShard < n {
		k *= 2
	}
	ns := Nodes{seed: maphash.MakeSeed(), shards: make([]map[string]*Node, k), owned: make([]bool, k)}
	for i := range ns.shards {
		ns.shards[i], ns.owned[i] = map[string]*Node{}, true
	}
	return ns
}

// next returns Nodes equal to ns that share its shards until they are written.
func (ns Nodes) next() Nodes {
	return Nodes{seed: ns.seed, shards: append([]map[string]*Node(nil), ns.shards...), owned: make([]bool, len(ns.shards)), n: ns.n}
}

func (ns Nodes) shard(name string) int {
	return int(maphash.String(ns.seed, name) & uint64(len(ns.shards)-1))
}

// Get returns the node of name, or nil.
func (ns Nodes) Get(name string) *Node {
	if len(ns.shards) == 0 {
		return nil
	}
	return ns.shards[ns.shard(name)][name]
}

// Len returns how many names ns holds.
func (ns Nodes) Len() int { return ns.n }

// All yields every name and its node, in no order.
func (ns Nodes) All() iter.Seq2[string, *Node] {
	return func(yield func(string, *Node) bool) {
		for _, s := range ns.shards {
			for name, n := range s {
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
	i := ns.shard(name)
	if !ns.owned[i] {
		ns.shards[i], ns.owned[i] = maps.Clone(ns.shards[i]), true
	}
	if _, ok := ns.shards[i][name]; !ok {
		ns.n++
	}
	ns.shards[i][name] = n
}
