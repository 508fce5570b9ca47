package dnsupdater

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/state"
)

// projector folds STATE events into a view and turns it into zones, bumping a zone's serial
// whenever its answers change. One goroutine owns it.
type projector struct {
	static *zone.Static
	now    func() time.Time
	view   *state.View
	// latest holds the last event of every STATE subject: what the snapshot keeps.
	latest  map[string]storedEvent
	serials map[string]uint32
	// restored holds, per zone, the digest of the content the snapshot's serial stood for: a
	// first projection with other content takes a new serial.
	restored map[string]string
	// started lists the zones whose first projection took a new serial, whose secondaries
	// must be notified once the server runs.
	started []*zone.Zone
	// current holds the zones of the last projection (immutable once projected).
	current []*zone.Zone
	// served holds, per zone, the record sets and the answer signature at the current serial.
	served map[string]servedZone
}

type storedEvent struct {
	Subject string          `json:"subject"`
	Seq     uint64          `json:"seq"`
	Event   events.Envelope `json:"event"`
}

type servedZone struct {
	rrsets    map[zone.Key][]string
	signature string
}

// zoneChange is a zone whose answers changed, at its new serial.
type zoneChange struct {
	zone    *zone.Zone
	changes []events.RecordChange
}

func newProjector(static *zone.Static, now func() time.Time) *projector {
	return &projector{
		static: static, now: now, view: state.NewView(),
		latest: map[string]storedEvent{}, serials: map[string]uint32{}, served: map[string]servedZone{},
		restored: map[string]string{},
	}
}

// apply folds one STATE event stored at seq on subject, and reports whether the view changed.
func (p *projector) apply(subject string, seq uint64, e events.Envelope) (bool, error) {
	changed, err := p.view.Apply(subject, seq, e)
	if err != nil {
		return false, fmt.Errorf("apply %s at seq %d: %w", subject, seq, err)
	}
	if prev, ok := p.latest[subject]; !ok || seq > prev.Seq {
		p.latest[subject] = storedEvent{Subject: subject, Seq: seq, Event: e}
	}
	return changed, nil
}

// project returns the zones at the current state, bumping the serial of every zone whose
// answers differ from those at its current serial. The first projection of a zone takes a new
// serial unless a snapshot gave it one for the same content.
func (p *projector) project() []*zone.Zone {
	zones, _ := p.recompute()
	return zones
}

// recompute is project, also returning the zones that changed and how.
func (p *projector) recompute() ([]*zone.Zone, []zoneChange) {
	zones := p.static.Project(p.view, p.serials)
	p.current = zones
	var out []zoneChange
	for _, z := range zones {
		now := servedZone{rrsets: z.AppRRsets(), signature: signature(z)}
		prev, seen := p.served[z.Name]
		serial, hasSerial := p.serials[z.Name]
		switch {
		case !seen && (!hasSerial || p.restored[z.Name] != z.Digest()):
			// Content the snapshot's serial did not stand for (or no snapshot): a secondary
			// holding that serial must see a later one (RFC 1982), and be told.
			serial = NextSerial(serial, p.now())
			p.started = append(p.started, z)
		case !seen:
		case prev.signature == now.signature:
			continue
		case seen:
			serial = NextSerial(serial, p.now())
		}
		p.served[z.Name] = now
		if serial != z.Serial {
			p.serials[z.Name] = serial
			z.Serial, z.SOA.Serial = serial, serial
		}
		if seen {
			out = append(out, zoneChange{zone: z, changes: zone.Changes(prev.rrsets, now.rrsets)})
		}
	}
	return zones, out
}

// signature is a text that differs whenever any app answer of the zone does; the rest of a
// zone only changes with the configuration.
func signature(z *zone.Zone) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(z.Nodes)) {
		if n := z.Nodes[name]; n.App != nil {
			fmt.Fprintf(&b, "%s %d %v\n", name, n.AppTTL, *n.App)
		}
	}
	return b.String()
}

// NextSerial returns the serial that follows prev: the current Unix time when that is later in
// serial number arithmetic (RFC 1982), else prev + 1. Serials so increase on every change and
// survive a restart without a snapshot unless changes outran the clock.
func NextSerial(prev uint32, now time.Time) uint32 {
	t := uint32(now.Unix())
	if serialAfter(t, prev) {
		return t
	}
	return prev + 1
}

// serialAfter reports whether a is later than b in serial number arithmetic.
func serialAfter(a, b uint32) bool {
	return a != b && (a-b) < 1<<31
}
