package dnsupdater

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/state"
)

// projector folds STATE events into a view and turns it into zones, bumping a zone's serial
// whenever its answers change. One goroutine owns it.
type projector struct {
	static *zone.Static
	now    func() time.Time
	view   *state.View
	// latest holds the last event of every STATE subject: what the snapshot keeps; unsaved
	// the subjects whose last event changed since the last save.
	latest  map[string]storedEvent
	unsaved map[string]storedEvent
	// rebase says that the next save must be whole (see reset).
	rebase bool
	// created is when the STATE stream the events folded come from was created; zero when
	// unknown.
	created time.Time
	serials map[string]uint32
	// restored holds, per zone, the digest of the content the snapshot's serial stood for: a
	// first projection with other content takes a new serial.
	restored map[string]string
	// started lists the zones of the server's first projection that took a new serial, whose
	// secondaries must be notified once the server runs: New takes them. Zones a reload adds
	// are announced by the refresher (see announceReload), so later projections add none.
	started []*zone.Zone
	// current holds the zones of the last projection (immutable once projected).
	current []*zone.Zone
	// served holds, per zone, the app record sets at the current serial.
	served map[string]servedZone
	// dirty lists the indexes of the apps whose answers events applied since the last
	// projection may have changed; all says that every app's may have.
	dirty    []int
	dirtySet map[int]bool
	all      bool
	// reconfigured says that the configuration changed since the last projection: a zone's
	// static records and apps may differ too, not only its answers.
	reconfigured bool
	// passing holds the zones whose next projection takes a new serial whatever their content,
	// and elsewhere those of them passing a serial another server recorded (see pass).
	passing, elsewhere map[string]bool
	// appIndex maps an app's name to its index in the configuration, and edgeApps an edge's
	// name to the apps whose CNAME it may be.
	appIndex map[string]int
	edgeApps map[string][]int
	// folded is the highest STATE sequence folded (under the follower's lock); position is
	// what it was when the current projection was decided, and positionCreated created then
	// (the refresher's).
	folded, position uint64
	positionCreated  time.Time
	// since holds, per zone, the position when its current records were made (a re-stamp
	// keeps them; see peers.go). The refresher's.
	since map[string]uint64
	// peers holds the serials other servers recorded, which new versions pass (nil: none
	// followed). The refresher's.
	peers *peerClock
	// digests caches the digest of each zone's current version (see digestOf).
	digests map[string]digested
}

// digested is a zone version and its digest.
type digested struct {
	zone   *zone.Zone
	digest string
}

type storedEvent struct {
	Subject string          `json:"subject"`
	Seq     uint64          `json:"seq"`
	Event   events.Envelope `json:"event"`
	// raw is Event as the stream stored it, when at hand: the snapshot writes it as it is
	// rather than encoding Event again.
	raw []byte
}

type servedZone struct {
	rrsets map[zone.Key][]string
}

// zoneChange is a zone whose answers changed, at its new serial.
type zoneChange struct {
	zone    *zone.Zone
	changes []events.RecordChange
	// from and names, until describe replaces them with changes, are the version before and
	// the names whose answers zone replaced.
	from  *zone.Zone
	names []string
	// step is the IXFR step from the serial before, when the change is one (refresh sets it).
	step *events.ZoneStep
	// unstepped says that the version passes a serial recorded elsewhere (see pass), at or
	// after the one this server served: by another DNS server (or an earlier run under another
	// id), which may also have recorded the served serial or an earlier one of this server's
	// history on the way, with other records. A secondary holding one of those may hold its
	// records, to which no step from this server's version there applies, so the version starts
	// a new IXFR history, as a new configuration does, and a secondary behind it gets the whole
	// zone.
	unstepped bool
	// at is when the refresher swapped the zone's new answers in (refresh sets it).
	at time.Time
	// position is the highest STATE sequence folded into the version (refresh sets it), and
	// digest the digest of its records (the reporter sets it).
	position uint64
	digest   string
}

func newProjector(static *zone.Static, now func() time.Time) *projector {
	p := &projector{
		now: now, view: state.NewView(),
		latest: map[string]storedEvent{}, unsaved: map[string]storedEvent{}, serials: map[string]uint32{}, served: map[string]servedZone{},
		restored: map[string]string{}, dirtySet: map[int]bool{}, digests: map[string]digested{}, since: map[string]uint64{},
	}
	p.setStatic(static)
	p.reconfigured = false
	return p
}

// setStatic makes static the configuration projected from the next recompute on, which
// projects every app again and gives every zone whose content changed a later serial.
func (p *projector) setStatic(static *zone.Static) {
	p.static, p.all, p.reconfigured = static, true, true
	p.appIndex, p.edgeApps = map[string]int{}, map[string][]int{}
	for i, a := range static.Config().Apps {
		p.appIndex[a.Name] = i
		for _, e := range a.Ingress {
			p.edgeApps[e] = append(p.edgeApps[e], i)
		}
		if a.PrimaryEdge != "" && !slices.Contains(a.Ingress, a.PrimaryEdge) {
			p.edgeApps[a.PrimaryEdge] = append(p.edgeApps[a.PrimaryEdge], i)
		}
	}
}

// touch notes the apps whose answers an event on subject may change: the app an endpoint,
// pool or override subject names, the apps an edge may be the CNAME of; every app for a
// subject it does not know.
func (p *projector) touch(subject string) {
	mark := func(i int) {
		if !p.dirtySet[i] {
			p.dirtySet[i] = true
			p.dirty = append(p.dirty, i)
		}
	}
	for _, prefix := range []string{"detour.state.endpoint", "detour.state.pool", "detour.state.override"} {
		if tok := events.SplitSubject(subject, prefix); len(tok) > 0 {
			if i, ok := p.appIndex[tok[0]]; ok {
				mark(i)
			}
			return
		}
	}
	if tok := events.SplitSubject(subject, "detour.state.edge"); len(tok) == 1 {
		for _, i := range p.edgeApps[tok[0]] {
			mark(i)
		}
		return
	}
	p.all = true
}

// newest returns the event folded at the highest sequence (zero when none was).
func (p *projector) newest() storedEvent {
	var out storedEvent
	for _, e := range p.latest {
		if e.Seq > out.Seq {
			out = e
		}
	}
	return out
}

// pass gives each zone of serials a new serial at the next projection, after the one given
// (or after its own, if later), whether or not its answers changed: a secondary may hold the
// serial given (see Server.passServed). elsewhere says that another server (or an earlier run
// under another id) recorded the serials: the versions start a new IXFR history (see
// zoneChange.unstepped).
func (p *projector) pass(serials map[string]uint32, elsewhere bool) {
	if p.passing == nil {
		p.passing, p.elsewhere = map[string]bool{}, map[string]bool{}
	}
	for name, serial := range serials {
		if cur, ok := p.serials[name]; !ok || serialAfter(serial, cur) {
			p.serials[name] = serial
		}
		delete(p.restored, name)
		p.passing[name] = true
		if elsewhere {
			p.elsewhere[name] = true
		}
	}
}

// reset forgets every STATE event folded: the stream was deleted and created again
// (events.Delivery.Recreated), and the projection starts over from the new one's events, whose
// sequences start over at 1. The next projection decides every app again, and the next save is
// whole: a journal line's events would lose to the base's of the old stream, sequence for
// sequence.
func (p *projector) reset() {
	p.view.Reset()
	p.latest, p.unsaved, p.since = map[string]storedEvent{}, map[string]storedEvent{}, map[string]uint64{}
	p.all, p.rebase, p.folded = true, true, 0
}

// apply folds one STATE event stored at seq on subject, and reports whether the view changed.
// raw is the message e was decoded from (nil when there is none), which the snapshot keeps.
func (p *projector) apply(subject string, seq uint64, e events.Envelope, raw []byte) (bool, error) {
	changed, err := p.view.Apply(subject, seq, e)
	if err != nil {
		return false, fmt.Errorf("apply %s at seq %d: %w", subject, seq, err)
	}
	p.folded = max(p.folded, seq)
	if prev, ok := p.latest[subject]; !ok || seq > prev.Seq {
		ev := storedEvent{Subject: subject, Seq: seq, Event: e, raw: raw}
		p.latest[subject], p.unsaved[subject] = ev, ev
	}
	if changed {
		p.touch(subject)
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

// recompute is project, also returning the zones that changed and how. After the first
// projection it decides again only the answers of the apps the events applied since touched,
// so that a burst of transitions costs in proportion to the apps it changed; the result shares
// every unchanged node with the previous projection, which stays as it was.
func (p *projector) recompute() ([]*zone.Zone, []zoneChange) {
	zones, out := p.finish(p.decide())
	p.describe(out)
	return zones, out
}

// decision is a projection's first half: the answers decided again, per zone of the current
// projection (or, after a whole projection, its result).
type decision struct {
	// position is the highest STATE sequence folded into it, of the stream created at created.
	position  uint64
	created   time.Time
	redecided map[int][]zone.Redecided
	whole     bool
	zones     []*zone.Zone
	out       []zoneChange
	// passing lists the zones that take a new serial whatever their answers, and elsewhere
	// those of them passing a serial another server recorded (see pass).
	passing, elsewhere map[string]bool
}

// decide is the half of recompute that reads the view: the follower must not fold events
// meanwhile. finish, the other half, does not read it, so the follower folds while it runs.
func (p *projector) decide() decision {
	passing, elsewhere := p.passing, p.elsewhere
	p.passing, p.elsewhere = nil, nil
	if p.all || p.current == nil {
		zones, out := p.recomputeAll(passing, elsewhere)
		return decision{position: p.folded, created: p.created, whole: true, zones: zones, out: out}
	}
	if len(p.dirty) == 0 && len(passing) == 0 {
		return decision{position: p.folded, created: p.created}
	}
	byZone := map[*config.Zone][]int{}
	c := p.static.Config()
	for _, i := range p.dirty {
		if z := c.ZoneOf(c.Apps[i].FQDN); z != nil {
			byZone[z] = append(byZone[z], i)
		}
	}
	p.dirty, p.dirtySet = p.dirty[:0], map[int]bool{}
	d := decision{position: p.folded, created: p.created, redecided: map[int][]zone.Redecided{}, passing: passing, elsewhere: elsewhere}
	for k, z := range p.current {
		if apps := byZone[z.Config]; len(apps) > 0 {
			if r := p.static.Redecide(z, apps, p.view); len(r) > 0 {
				d.redecided[k] = r
			}
		}
	}
	return d
}

// finish makes the zones of a decision: the new versions of the zones whose answers changed,
// each at a new serial, and which names changed; describe, once the zones are served, says
// how. Only the refresher calls it (and decide before it, describe after it); it reads no
// state the follower writes.
func (p *projector) finish(d decision) ([]*zone.Zone, []zoneChange) {
	p.position, p.positionCreated = d.position, d.created
	if d.whole {
		return d.zones, d.out
	}
	if len(d.redecided) == 0 && len(d.passing) == 0 {
		return p.current, nil
	}
	zones := slices.Clone(p.current)
	var out []zoneChange
	for k, z := range zones {
		nz, names := z.Replace(d.redecided[k])
		switch {
		case len(names) > 0:
		case d.passing[z.Name]:
			// Served before at this serial or a later one, by an earlier run or another server:
			// the same answers at a new serial, which costs the apex alone.
			nz = z.Restamp()
		default:
			continue
		}
		serial := p.nextSerial(z.Name)
		p.serials[z.Name] = serial
		if len(names) > 0 {
			p.since[z.Name] = d.position
		}
		nz.Serial, nz.SOA.Serial = serial, serial
		zones[k] = nz
		out = append(out, zoneChange{zone: nz, from: z, names: names, unstepped: d.elsewhere[z.Name]})
	}
	p.current = zones
	return zones, out
}

// describe fills in the record changes of the zone changes finish made, in order, and keeps
// the served record sets with them: the refresher calls it once the new zones are served, so
// that the presentation form of every changed record set is not made while the answers wait.
func (p *projector) describe(out []zoneChange) {
	for i, c := range out {
		if c.from == nil {
			continue
		}
		before, after := map[zone.Key][]string{}, map[zone.Key][]string{}
		for _, name := range c.names {
			c.from.Nodes.Get(name).AppRRsets(before)
			c.zone.Nodes.Get(name).AppRRsets(after)
		}
		served := p.served[c.zone.Name].rrsets
		for k := range before {
			delete(served, k)
		}
		maps.Copy(served, after)
		out[i] = zoneChange{zone: c.zone, changes: zone.Changes(before, after), unstepped: c.unstepped}
	}
}

// recomputeAll projects every zone from the whole configuration, as the first projection does;
// the zones of passing take a new serial whatever their answers, those of elsewhere with no
// IXFR step to it (see pass).
func (p *projector) recomputeAll(passing, elsewhere map[string]bool) ([]*zone.Zone, []zoneChange) {
	prevZones := map[string]*zone.Zone{}
	for _, z := range p.current {
		prevZones[z.Name] = z
	}
	reconfigured, first := p.reconfigured, p.current == nil
	p.all, p.reconfigured, p.dirty, p.dirtySet = false, false, p.dirty[:0], map[int]bool{}
	zones := p.static.Project(p.view, p.serials)
	p.current = zones
	var out []zoneChange
	for _, z := range zones {
		now := servedZone{rrsets: z.AppRRsets()}
		prev, seen := p.served[z.Name]
		serial, hasSerial := p.serials[z.Name]
		// Other records than the version before (each digest made once, and only on a reload).
		other := !seen || answersDiffer(prevZones[z.Name], z) || reconfigured && prevZones[z.Name].Digest() != z.Digest()
		if _, ok := p.since[z.Name]; !ok || other {
			p.since[z.Name] = p.folded
		}
		switch {
		case !seen && (!hasSerial || p.restored[z.Name] != z.Digest()):
			// Content the snapshot's serial did not stand for (or no snapshot): a secondary
			// holding that serial must see a later one (RFC 1982), and be told.
			serial = p.nextSerial(z.Name)
			if first {
				p.started = append(p.started, z)
			}
		case !seen:
		case passing[z.Name]:
			// Content served before at this serial or a later one, by an earlier run or
			// another server.
			serial = p.nextSerial(z.Name)
		case !other:
			continue
		case seen:
			serial = p.nextSerial(z.Name)
		}
		p.served[z.Name] = now
		if serial != z.Serial {
			p.serials[z.Name] = serial
			z.Serial, z.SOA.Serial = serial, serial
		}
		if seen {
			out = append(out, zoneChange{zone: z, changes: zone.Changes(prev.rrsets, now.rrsets), unstepped: elsewhere[z.Name]})
		}
	}
	return zones, out
}

// nextSerial returns the serial of the next version of the zone name: after its own last one
// and after the highest one other servers recorded of it (see peers.go).
func (p *projector) nextSerial(name string) uint32 {
	prev := p.serials[name]
	if peer, ok := p.peers.floor(name); ok && serialAfter(peer, prev) {
		prev = peer
	}
	return NextSerial(prev, p.now())
}

// digestOf returns z's digest (zone.Digest), computed once per version. Only the refresher
// calls it.
func (p *projector) digestOf(z *zone.Zone) string {
	if d, ok := p.digests[z.Name]; ok && d.zone == z {
		return d.digest
	}
	d := z.Digest()
	p.digests[z.Name] = digested{zone: z, digest: d}
	return d
}

// answersDiffer reports whether any app name of b answers otherwise than in a (nil: a zone not
// projected yet). The rest of a zone only changes with the configuration.
func answersDiffer(a, b *zone.Zone) bool {
	if a == nil {
		return true
	}
	for name, n := range b.Nodes.All() {
		if n.App == nil {
			continue
		}
		o := a.Nodes.Get(name)
		if o == nil || o.App == nil || o.AppTTL != n.AppTTL || !o.App.Equal(n.App) {
			return true
		}
	}
	return false
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
