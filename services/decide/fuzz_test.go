package decide

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// FuzzEndpoint plays arbitrary results, silences and overrides under arbitrary thresholds and
// checks what must always hold: every decision is a real change to the new effective status; the
// effective status is the override in force, else the probes' status; and the probes' status
// follows the quorum of the voting regions (down without it; up with it, unless hold-down holds).
func FuzzEndpoint(f *testing.F) {
	f.Add([]byte{0, 0, 3, 3, 3, 6, 9, 12, 0, 0, 15}, uint8(3), uint8(2), uint8(49), uint8(0))
	f.Add([]byte{0, 1, 2, 0, 1, 2, 4, 4, 4, 6, 6, 6, 6, 0, 0}, uint8(1), uint8(1), uint8(99), uint8(2))
	f.Add([]byte("+-+-+-++++----____!!##"), uint8(2), uint8(3), uint8(17), uint8(1))
	f.Fuzz(func(t *testing.T, ops []byte, fall, rise, quorum, hold uint8) {
		p := Policy{Fall: int(fall%5) + 1, Rise: int(rise%5) + 1, Quorum: float64(quorum%100+1) / 100,
			StaleAfter: 3 * time.Second, HoldDown: time.Duration(hold%4) * time.Second, Interval: time.Second}
		var e Endpoint
		at := t0
		actions := []string{"", events.ActionForceUp, events.ActionForceDown, events.ActionDrain}
		for i, op := range ops {
			id := strconv.Itoa(i)
			region := string(rune('a' + op%3))
			var d Decision
			var ok bool
			switch op / 3 % 6 {
			case 0, 1:
				d, ok = e.Observe(Result{ID: id, Region: region, At: at, OK: op/3%6 == 0}, p)
			case 2:
				at = at.Add(time.Second)
				d, ok = e.Expire(at, p)
			case 3:
				d, ok = e.SetOverride(ScopeEndpoint, events.Override{Action: actions[op%4], By: "f", Reason: "r"}, id, at, p)
			case 4:
				d, ok = e.SetOverride(ScopePool, events.Override{Action: actions[op%4], By: "f", Reason: "r"}, id, at, p)
			case 5:
				at = at.Add(300 * time.Millisecond)
			}
			if ok && (d.To != e.Status || d.From == d.To || d.To == events.StatusUnknown || d.Cause == "" || d.Reason == "") {
				t.Fatalf("op %d: decision %+v with status %s", i, d, e.Status)
			}
			if o := e.override(); o != nil && e.Status != overrideStatus(o.Action) {
				t.Fatalf("op %d: status %s under override %s", i, e.Status, o.Action)
			} else if o == nil && e.Status != e.Probed {
				t.Fatalf("op %d: status %s but the probes say %s", i, e.Status, e.Probed)
			}
			up, voting := e.count()
			switch {
			case voting == 0:
			case !Healthy(up, voting, p.Quorum) && e.Probed != events.StatusDown:
				t.Fatalf("op %d: %d of %d up under quorum %v, yet probed %s", i, up, voting, p.Quorum, e.Probed)
			case Healthy(up, voting, p.Quorum) && e.Probed != events.StatusUp && e.HealthySince.IsZero():
				t.Fatalf("op %d: %d of %d up under quorum %v, yet probed %s without hold-down", i, up, voting, p.Quorum, e.Probed)
			}
		}
	})
}

// FuzzExpiresAt plays arbitrary results, silences and overrides on two endpoints: one has
// Expire called at every step, the other only from its ExpiresAt on. They must stay identical
// and make the same decisions: skipping Expire before ExpiresAt, as the decider does for
// thousands of endpoints on each tick, changes nothing.
func FuzzExpiresAt(f *testing.F) {
	f.Add([]byte{0, 0, 3, 3, 3, 6, 9, 12, 0, 0, 15}, uint8(3), uint8(2), uint8(49), uint8(0), uint8(3))
	f.Add([]byte{0, 1, 2, 0, 1, 2, 4, 4, 4, 6, 6, 6, 6, 0, 0}, uint8(1), uint8(1), uint8(99), uint8(2), uint8(0))
	f.Add([]byte("+-+-+-++++----____!!##"), uint8(2), uint8(3), uint8(17), uint8(1), uint8(7))
	f.Add([]byte{1, 1, 1, 0, 0, 6, 6, 6, 6, 6, 6, 0, 6, 6, 6, 6, 6}, uint8(3), uint8(2), uint8(50), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, ops []byte, fall, rise, quorum, hold, stale uint8) {
		p := Policy{Fall: int(fall%5) + 1, Rise: int(rise%5) + 1, Quorum: float64(quorum%100+1) / 100,
			StaleAfter: time.Duration(stale%8) * 500 * time.Millisecond, HoldDown: time.Duration(hold%4) * time.Second,
			Interval: time.Second}
		var always, skipping Endpoint
		at := t0
		actions := []string{"", events.ActionForceUp, events.ActionForceDown, events.ActionDrain}
		for i, op := range ops {
			id := strconv.Itoa(i)
			var d1, d2 Decision
			var ok1, ok2 bool
			switch op / 3 % 5 {
			case 0, 1:
				r := Result{ID: id, Region: string(rune('a' + op%3)), At: at, OK: op/3%5 == 0}
				d1, ok1 = always.Observe(r, p)
				d2, ok2 = skipping.Observe(r, p)
			case 2:
				o := events.Override{Action: actions[op%4], By: "f", Reason: "r"}
				d1, ok1 = always.SetOverride(ScopeEndpoint, o, id, at, p)
				d2, ok2 = skipping.SetOverride(ScopeEndpoint, o, id, at, p)
			case 3, 4:
				// Time passes in uneven steps of 71 ms to a little over a second.
				at = at.Add(time.Duration(op%16+1)*71*time.Millisecond + time.Duration(op%7)*time.Millisecond)
				d1, ok1 = always.Expire(at, p)
				if due, any := skipping.ExpiresAt(p); any && !at.Before(due) {
					d2, ok2 = skipping.Expire(at, p)
				}
			}
			if ok1 != ok2 || !reflect.DeepEqual(d1, d2) {
				t.Fatalf("op %d at %v: decided %v %+v when expired every step, %v %+v from ExpiresAt on", i, at.Sub(t0), ok1, d1, ok2, d2)
			}
			if !reflect.DeepEqual(always, skipping) {
				t.Fatalf("op %d at %v: endpoint %+v when expired every step, %+v from ExpiresAt on", i, at.Sub(t0), always, skipping)
			}
		}
	})
}
