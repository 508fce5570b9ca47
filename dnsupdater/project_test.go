package dnsupdater

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// incrementalConfig mixes every kind of answer: failover with a backup, weighted, round robin,
// by source, a CNAME to ingress edges, IPv6, and an app at the apex; and names whose replies
// hold an app's answer, in its zone and in the other: CNAMEs to apps (one through an app's CNAME
// to an edge), MX and SRV records whose targets are apps.
const incrementalConfig = `
zones:
  - name: demo.test
    records: ["www IN CNAME shop", "txt IN TXT \"hello\"", "tow IN CNAME w", "torr IN CNAME rr.other.test.",
      "mail IN MX 10 shop", "_http._tcp IN SRV 0 0 80 shop", "geomail IN MX 10 geo"]
  - name: other.test
    records: ["toshop IN CNAME shop.demo.test.", "toweb IN CNAME web.demo.test.", "mail IN MX 10 shop.demo.test.",
      "_http._tcp IN SRV 0 0 80 other.test."]
edges:
  - {name: edge-a, region: west, hostname: edge-a.demo.test, address: 10.9.0.1}
  - {name: edge-b, region: east, hostname: edge-b.demo.test, address: 10.9.0.2}
apps:
  - name: shop
    fqdn: shop.demo.test
    pools:
      - {name: p1, endpoints: [{address: "127.0.0.11:80"}, {address: "[2001:db8::11]:80"}]}
      - {name: p2, endpoints: [{address: "127.0.0.12:80"}]}
  - name: weighted
    fqdn: w.demo.test
    policy: weighted
    pools:
      - {name: a, weight: 3, endpoints: [{address: "10.0.0.1:80"}, {address: "10.0.0.2:80"}]}
      - {name: b, weight: 1, endpoints: [{address: "10.0.1.1:80"}]}
  - name: rr
    fqdn: rr.other.test
    policy: round_robin
    pools:
      - {name: a, endpoints: [{address: "10.0.2.1:80"}, {address: "10.0.2.2:80"}]}
  - name: geo
    fqdn: geo.demo.test
    policy: source
    sources: [{cidrs: ["10.1.0.0/16"], pools: [west]}]
    default_pools: [east]
    pools:
      - {name: west, endpoints: [{address: "10.0.3.1:80"}]}
      - {name: east, endpoints: [{address: "10.0.4.1:80"}]}
  - name: web
    fqdn: web.demo.test
    ingress: [edge-a, edge-b]
    pools: [{name: p1, endpoints: [{address: "127.0.0.13:80"}]}]
  - name: apex
    fqdn: other.test
    pools: [{name: p1, endpoints: [{address: "10.0.5.1:80"}]}]
`

// TestAnswersRecompiledForChangedAppsOnlyEqualAFullRecompilation folds random transitions
// into a projector, which decides again only the apps they touch and reuses the prepared
// answers of the rest, and checks after every burst that each zone and each prepared reply is
// byte for byte what projecting and preparing everything from scratch gives, and that the IXFR
// step recorded for the version is the difference between the two whole zones.
func TestAnswersRecompiledForChangedAppsOnlyEqualAFullRecompilation(t *testing.T) {
	if versions := recompileAndCompare(t, 1, 2, 300); versions < 50 {
		t.Fatalf("only %d zone versions in 300 bursts: the transitions hardly changed any answer", versions)
	}
}

// FuzzAnswersRecompiledForChangedApps is the test above over bursts drawn from other seeds.
func FuzzAnswersRecompiledForChangedApps(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(7), uint64(0))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		recompileAndCompare(t, a, b, 40)
	})
}

// recompileAndCompare runs bursts of random transitions drawn from the seeds a and b through
// the incremental path (recompute, then buildTable from the table before) and compares every
// version with a full projection and preparation, and its IXFR step with the difference of the
// whole zones. It returns how many zone versions the bursts made.
func recompileAndCompare(t *testing.T, a, b uint64, bursts int) int {
	cfg := eventstest.Config(t, incrementalConfig)
	p, static, clock := clockedProjector(t, cfg)
	tbl := buildTable(p.project(), nil)

	var subjects []string
	for _, a := range cfg.Apps {
		for _, pl := range a.Pools {
			subjects = append(subjects, events.PoolStateSubject(a.Name, pl.Name))
			for _, e := range pl.Endpoints {
				subjects = append(subjects, events.EndpointStateSubject(a.Name, pl.Name, e.Name))
			}
		}
	}
	for _, e := range cfg.Edges {
		subjects = append(subjects, events.EdgeStateSubject(e.Name))
	}
	rng := rand.New(rand.NewPCG(a, b))
	seq, versions := uint64(0), 0
	for burst := range bursts {
		for range 1 + rng.IntN(6) {
			subject := subjects[rng.IntN(len(subjects))]
			typ := []string{events.TypeEndpointDown, events.TypeEndpointUp}[rng.IntN(2)]
			switch {
			case bytes.HasPrefix([]byte(subject), []byte("detour.state.pool")):
				typ = []string{events.TypePoolDown, events.TypePoolUp}[rng.IntN(2)]
			case bytes.HasPrefix([]byte(subject), []byte("detour.state.edge")):
				typ = []string{events.TypeEdgeDown, events.TypeEdgeUp}[rng.IntN(2)]
			}
			seq++
			env, err := events.New(typ, "test", *clock, events.Transition{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.apply(subject, seq, env, env.Encode()); err != nil {
				t.Fatal(err)
			}
		}
		*clock = clock.Add(time.Duration(rng.IntN(3)) * time.Second)
		before := tbl
		zones, changes := p.recompute()
		versions += len(changes)
		tbl = buildTable(zones, tbl)

		full := static.Project(p.view, p.serials)
		fresh := buildTable(full, nil)
		for i, z := range zones {
			if got, want := z.Serial, full[i].Serial; got != want {
				t.Fatalf("burst %d: zone %s at serial %d, a full projection says %d", burst, z.Name, got, want)
			}
			if got, want := contentOf(z), contentOf(full[i]); got != want {
				t.Fatalf("burst %d: zone %s differs from a full projection:\n%s\nwant\n%s", burst, z.Name, got, want)
			}
			old := before.zones[i]
			if old.Serial == z.Serial {
				continue
			}
			h := tbl.history[z.Name]
			step := h[len(h)-1]
			if got, want := stepLines(step), wholeDifference(old, z); got != want {
				t.Fatalf("burst %d: zone %s's step %d -> %d:\n%s\nthe whole zones differ by\n%s", burst, z.Name, old.Serial, z.Serial, got, want)
			}
		}
		if got, want := describe(tbl), describe(fresh); !slices.Equal(got, want) {
			t.Fatalf("burst %d: prepared replies differ from a full preparation:\n%s", burst, difference(got, want))
		}
	}
	return versions
}

// stepLines lists an IXFR step's records, deleted (-) then added (+), sorted.
func stepLines(d zone.Delta) string {
	var lines []string
	for _, rr := range d.Deleted {
		lines = append(lines, "- "+rr.String())
	}
	for _, rr := range d.Added {
		lines = append(lines, "+ "+rr.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// wholeDifference lists the records but the SOA that only old (-) or only z (+) holds, sorted,
// from the whole content of both.
func wholeDifference(old, z *zone.Zone) string {
	records := func(z *zone.Zone) []string {
		var out []string
		for _, rr := range z.Content()[1:] {
			out = append(out, rr.String())
		}
		return out
	}
	o, n := records(old), records(z)
	var lines []string
	for _, r := range o {
		if !slices.Contains(n, r) {
			lines = append(lines, "- "+r)
		}
	}
	for _, r := range n {
		if !slices.Contains(o, r) {
			lines = append(lines, "+ "+r)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func contentOf(z *zone.Zone) string {
	var b bytes.Buffer
	for _, rr := range z.Content() {
		fmt.Fprintln(&b, rr.String())
	}
	return b.String()
}

// describe lists every prepared reply of t as it is sent (with the zone's serial), by name
// and query type, in a fixed order.
func describe(t *table) []string {
	var lines []string
	for wire, e := range t.entries.all() {
		sent := func(tmpl []byte) []byte {
			out := slices.Clone(tmpl)
			t.stampSerial(out, tmpl, e)
			return out
		}
		for _, p := range e.types {
			lines = append(lines, fmt.Sprintf("%q type %d %x", wire, p.qtype, sent(p.tmpl)))
		}
		for fam, c := range map[string]*choice{"a": e.a, "aaaa": e.aaaa} {
			if c == nil {
				continue
			}
			lines = append(lines, fmt.Sprintf("%q %s empty %x", wire, fam, sent(c.empty)))
			for i, tm := range c.tmpls {
				lines = append(lines, fmt.Sprintf("%q %s variant %d %x", wire, fam, i, sent(tm)))
			}
		}
		lines = append(lines, fmt.Sprintf("%q nodata %x", wire, sent(e.nodata)))
	}
	slices.Sort(lines)
	return lines
}

// difference lists the lines only got has (+) and only want has (-).
func difference(got, want []string) string {
	var b bytes.Buffer
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintln(&b, "+", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintln(&b, "-", l)
		}
	}
	return b.String()
}

// clockedProjector compiles cfg and returns a projector of it, its static part, and the clock it
// reads, set to the start of 2026 and moved by the test.
func clockedProjector(t *testing.T, cfg *config.Config) (*projector, *zone.Static, *time.Time) {
	t.Helper()
	static, err := zone.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return newProjector(static, func() time.Time { return clock }), static, &clock
}
