package prober

// queue is the dispatch queue: every check of the configuration, earliest instant first. It is a
// 4-ary heap of (instant, slot) pairs held by value, where container/heap's was a binary heap of
// slot pointers behind an interface: a prober pops each check of its region once a window,
// owned or not (30,000 pops every 10 s each in a region of 10,000 apps), and each pop sifts
// the check to the bottom past every level. Here the instants compared are the heap's own
// 8-byte words, four children side by side, half the levels deep; there each comparison was
// two interface calls and two slots read from wherever they lie, the profile's largest
// user-space cost (queue.Less 5 % of a prober's CPU in bench:region's failure storm). It pops
// in container/heap's order, equal instants in either's own (TestTheQueuePopsInTheOrderContainerHeapDoes).
type queue struct{ e []entry }

// entry is one check in the queue: at is its slot's instant in Unix nanoseconds.
type entry struct {
	at int64
	s  *slot
}

// newQueue orders ss by their instants.
func newQueue(ss []*slot) queue {
	q := queue{e: make([]entry, len(ss))}
	for i, s := range ss {
		q.e[i] = entry{at: s.at.UnixNano(), s: s}
	}
	// The last parent is the one of the last entry.
	for i := (len(q.e) - 2) / 4; i >= 0 && len(q.e) > 1; i-- {
		q.down(i)
	}
	return q
}

// len is the number of checks queued.
func (q *queue) len() int { return len(q.e) }

// top is the check with the earliest instant; the queue must not be empty.
func (q *queue) top() *slot { return q.e[0].s }

// topAt is the top's instant in Unix nanoseconds.
func (q *queue) topAt() int64 { return q.e[0].at }

// fixTop restores the order after the top's slot moved to another instant.
func (q *queue) fixTop() {
	q.e[0].at = q.e[0].s.at.UnixNano()
	q.down(0)
}

// down moves the entry at i towards the leaves until no child comes before it.
func (q *queue) down(i int) {
	e := q.e
	x := e[i]
	for {
		c := 4*i + 1
		if c >= len(e) {
			break
		}
		// The earliest of up to four children.
		m, end := c, min(c+4, len(e))
		for j := c + 1; j < end; j++ {
			if e[j].at < e[m].at {
				m = j
			}
		}
		if e[m].at >= x.at {
			break
		}
		e[i] = e[m]
		i = m
	}
	e[i] = x
}
