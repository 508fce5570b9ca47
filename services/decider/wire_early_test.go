package decider

import (
	"strconv"
	"testing"
)

func TestACopyHeardOnTheWireAfterPROBESDeliveredItIsDroppedAsItComes(t *testing.T) {
	d := &decider{live: true}
	d.delivered("r1")
	d.heard(heardMsg{subject: "detour.probe.eu.shop.west.w1", id: "r1"})
	if len(d.waiting) != 0 || len(d.waitOrder) != 0 {
		t.Errorf("the late copy waits to be folded from the wire (%d waiting)", len(d.waiting))
	}
	// A copy heard first still waits for PROBES, which then drops it.
	d.heard(heardMsg{subject: "detour.probe.eu.shop.west.w1", id: "r2"})
	if _, ok := d.waiting["r2"]; !ok {
		t.Fatal("a copy heard before PROBES delivered it does not wait")
	}
	d.delivered("r2")
	if len(d.waiting) != 0 {
		t.Errorf("%d copies wait after PROBES delivered them", len(d.waiting))
	}
	// The ids remembered are bounded.
	for i := range 3 * wireBuffer {
		d.delivered("x" + strconv.Itoa(i))
	}
	if len(d.early) > wireBuffer {
		t.Errorf("%d delivered ids remembered, want at most %d", len(d.early), wireBuffer)
	}
}
