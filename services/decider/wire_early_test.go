package decider

import (
	"strconv"
	"testing"
)

func TestACopyHeardOnTheWireAfterPROBESDeliveredItIsDroppedAsItComes(t *testing.T) {
	const subject = "detour.probe.eu.shop.west.w1"
	d := &decider{live: true}
	d.delivered(msgKey{subject, "r1"})
	d.heard(heardMsg{key: msgKey{subject, "r1"}})
	if len(d.waiting) != 0 || len(d.waitOrder) != 0 {
		t.Errorf("the late copy waits to be folded from the wire (%d waiting)", len(d.waiting))
	}
	// A copy heard first still waits for PROBES, which then drops it.
	d.heard(heardMsg{key: msgKey{subject, "r2"}})
	if _, ok := d.waiting[msgKey{subject, "r2"}]; !ok {
		t.Fatal("a copy heard before PROBES delivered it does not wait")
	}
	d.delivered(msgKey{subject, "r2"})
	if len(d.waiting) != 0 {
		t.Errorf("%d copies wait after PROBES delivered them", len(d.waiting))
	}
	// The ids remembered are bounded.
	for i := range 3 * wireBuffer {
		d.delivered(msgKey{subject, "x" + strconv.Itoa(i)})
	}
	if len(d.early) > wireBuffer {
		t.Errorf("%d delivered ids remembered, want at most %d", len(d.early), wireBuffer)
	}
}

// A message on another region's subject under the same Nats-Msg-Id is another message: neither
// PROBES delivering it nor its copy waiting on the wire stands in for this one.
func TestAMessageOnAnotherRegionsSubjectUnderTheSameIDDoesNotStandInForOne(t *testing.T) {
	east, west := msgKey{"detour.probe.us-east.shop.west.w1", "r1"}, msgKey{"detour.probe.us-west.shop.west.w1", "r1"}
	d := &decider{live: true}
	d.delivered(west)
	d.heard(heardMsg{key: east})
	if _, ok := d.waiting[east]; !ok {
		t.Error("us-east's copy heard after PROBES delivered us-west's message under its id does not wait to be folded")
	}
	d = &decider{live: true}
	d.heard(heardMsg{key: west})
	d.heard(heardMsg{key: east})
	if _, ok := d.waiting[east]; !ok || len(d.waitOrder) != 2 {
		t.Errorf("us-east's copy heard while us-west's under its id waits is dropped (%d waiting)", len(d.waitOrder))
	}
}
