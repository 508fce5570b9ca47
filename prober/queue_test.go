package prober

import (
	"container/heap"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// refQueue is the dispatch queue as it was: container/heap over slot pointers.
type refQueue []*slot

func (q refQueue) Len() int           { return len(q) }
func (q refQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q refQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *refQueue) Push(x any)        { *q = append(*q, x.(*slot)) }
func (q *refQueue) Pop() any {
	old := *q
	s := old[len(old)-1]
	*q = old[:len(old)-1]
	return s
}

// popsLikeContainerHeap builds both queues from the same instants, then moves each top on by
// the steps in turn (a step of zero keeps it where it is), and reports the first pop at which
// the queues' earliest instants differ. With equal instants either may pop first, as in
// container/heap, so the instants are compared, not the slots.
func popsLikeContainerHeap(t *testing.T, ats []int64, steps []int64) {
	t.Helper()
	t0 := time.Unix(1_700_000_000, 0)
	mine := make([]*slot, len(ats))
	ref := make(refQueue, len(ats))
	for i, at := range ats {
		mine[i] = &slot{at: t0.Add(time.Duration(at))}
		ref[i] = &slot{at: t0.Add(time.Duration(at))}
	}
	q := newQueue(mine)
	heap.Init(&ref)
	for i, step := range steps {
		if q.len() == 0 {
			return
		}
		if got, want := q.top().at, ref[0].at; !got.Equal(want) || q.topAt() != want.UnixNano() {
			t.Fatalf("pop %d: the queue's earliest instant is %s (%d), container/heap's %s", i, got.Sub(t0), q.topAt()-t0.UnixNano(), want.Sub(t0))
		}
		q.top().at = q.top().at.Add(time.Duration(step))
		q.fixTop()
		ref[0].at = ref[0].at.Add(time.Duration(step))
		heap.Fix(&ref, 0)
	}
	// What is left pops in the same order: each top sent past every other instant in turn.
	far := t0.Add(1 << 62)
	for i := range q.len() {
		if got, want := q.top().at, ref[0].at; !got.Equal(want) {
			t.Fatalf("draining, pop %d: the queue's earliest instant is %s, container/heap's %s", i, got.Sub(t0), want.Sub(t0))
		}
		q.top().at = far
		q.fixTop()
		ref[0].at = far
		heap.Fix(&ref, 0)
	}
}

func TestTheQueuePopsInTheOrderContainerHeapDoes(t *testing.T) {
	t.Parallel() // pure: its cpu overlaps the parallel tests that wait on timers
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 4, 5, 6, 16, 17, 21, 100, 1000, 30000} {
		ats := make([]int64, n)
		for i := range ats {
			ats[i] = rng.Int64N(int64(10 * time.Second))
		}
		// A dispatcher's steps: each check one interval on, some skipping windows.
		steps := make([]int64, 3*n+10)
		for i := range steps {
			steps[i] = int64(10*time.Second) * (1 + rng.Int64N(3)/2)
		}
		popsLikeContainerHeap(t, ats, steps)
		// Many equal instants, and tops that stay or move by little.
		for i := range ats {
			ats[i] = rng.Int64N(4)
		}
		for i := range steps {
			steps[i] = rng.Int64N(3)
		}
		popsLikeContainerHeap(t, ats, steps)
	}
}

func FuzzTheQueuePopsInTheOrderContainerHeapDoes(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []byte{0, 1, 2})
	f.Add([]byte{}, []byte{})
	f.Add([]byte{9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 1}, []byte{0, 0, 255, 3})
	f.Fuzz(func(t *testing.T, instants, moves []byte) {
		// Two bytes an instant, so instants repeat; one byte a step.
		ats := make([]int64, len(instants)/2)
		for i := range ats {
			ats[i] = int64(binary.LittleEndian.Uint16(instants[2*i:]))
		}
		steps := make([]int64, len(moves))
		for i, m := range moves {
			steps[i] = int64(m) * 97
		}
		popsLikeContainerHeap(t, ats, steps)
	})
}

// BenchmarkDispatchQueue is the queue's share of a prober's dispatch in a region of 10,000
// apps: 30,000 checks at 10 s, each popped and moved one interval on; container/heap's, as the
// queue was, beside it.
func BenchmarkDispatchQueue(b *testing.B) {
	const n, interval = 30000, 10 * time.Second
	t0 := time.Unix(1_700_000_000, 0)
	slots := func() []*slot {
		rng := rand.New(rand.NewPCG(3, 4))
		ss := make([]*slot, n)
		for i := range ss {
			ss[i] = &slot{at: t0.Add(time.Duration(rng.Int64N(int64(interval))))}
		}
		return ss
	}
	b.Run("queue", func(b *testing.B) {
		q := newQueue(slots())
		for b.Loop() {
			s := q.top()
			s.at = s.at.Add(interval)
			q.fixTop()
		}
	})
	b.Run("container-heap", func(b *testing.B) {
		q := refQueue(slots())
		heap.Init(&q)
		for b.Loop() {
			q[0].at = q[0].at.Add(interval)
			heap.Fix(&q, 0)
		}
	})
}
