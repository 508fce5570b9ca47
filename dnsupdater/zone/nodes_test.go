package zone

import (
	"fmt"
	"maps"
	"testing"
)

// TestNodesCopiedOnWriteActLikeAMapAndLeaveEarlierVersionsAsTheyWere runs random writes
// through successive versions of the sharded nodes and, beside them, of a plain map copied
// whole per version (the peer: what Replace cloned before), and checks after each version that
// both hold the same names, and that every earlier version still holds what it held when it
// was built.
func TestNodesCopiedOnWriteActLikeAMapAndLeaveEarlierVersionsAsTheyWere(t *testing.T) {
	ops := make([]byte, 0, 4096)
	for i := range cap(ops) {
		ops = append(ops, byte(i*7919>>3))
	}
	checkNodes(t, ops)
}

// FuzzNodes is the test above over operations the fuzzer draws.
func FuzzNodes(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 255, 4, 5, 128, 6})
	f.Fuzz(func(t *testing.T, ops []byte) { checkNodes(t, ops) })
}

// checkNodes reads ops two bytes at a time: the first picks set or a new version, the second a
// name among 200 (and its node). The first version starts from none, or from 100 names when
// ops starts with an odd byte.
func checkNodes(t *testing.T, ops []byte) {
	pool := make([]*Node, 256)
	for i := range pool {
		pool[i] = &Node{Name: fmt.Sprint(i)}
	}
	var ns Nodes
	if len(ops) > 0 && ops[0]%2 == 1 {
		ns = newNodes(100)
	} else {
		ns = newNodes(0)
	}
	peer := map[string]*Node{}
	type version struct {
		ns   Nodes
		peer map[string]*Node
	}
	var versions []version
	for i := 0; i+1 < len(ops); i += 2 {
		name := fmt.Sprintf("n%03d.demo.test.", int(ops[i+1])%200)
		switch ops[i] % 4 {
		case 0:
			versions = append(versions, version{ns, peer})
			ns, peer = ns.next(), maps.Clone(peer)
		default:
			ns.set(name, pool[ops[i+1]])
			peer[name] = pool[ops[i+1]]
		}
	}
	versions = append(versions, version{ns, peer})
	for k, v := range versions {
		got := maps.Collect(v.ns.All())
		if !maps.Equal(got, v.peer) || v.ns.Len() != len(v.peer) {
			t.Fatalf("version %d holds %d names (Len %d), the map %d; they differ", k, len(got), v.ns.Len(), len(v.peer))
		}
		for i := range 200 {
			name := fmt.Sprintf("n%03d.demo.test.", i)
			if got, want := v.ns.Get(name), v.peer[name]; got != want {
				t.Fatalf("version %d: Get %q = %v, the map has %v", k, name, got, want)
			}
		}
	}
	var zero Nodes
	if zero.Get("x.") != nil || zero.Len() != 0 {
		t.Fatalf("the zero Nodes holds a name")
	}
}
