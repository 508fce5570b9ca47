package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func TestMedianTakesEachFigureOverTheRoundsThatRan(t *testing.T) {
	rs := []result{
		{name: "knot", qps: 100, p50: 3 * time.Millisecond, p99: 9 * time.Millisecond, cpu: 300 * time.Microsecond},
		{name: "knot", skipped: "knotd is not installed"},
		{name: "knot", qps: 300, p50: 1 * time.Millisecond, p99: 2 * time.Millisecond, cpu: 300 * time.Microsecond},
		{name: "knot", qps: 200, p50: 2 * time.Millisecond, p99: 5 * time.Millisecond, cpu: 1000 * time.Microsecond},
	}
	m := median(rs)
	if m.skipped != "" || m.qps != 200 || m.p50 != 2*time.Millisecond || m.p99 != 5*time.Millisecond {
		t.Fatalf("median = %+v, want qps 200, p50 2ms, p99 5ms", m)
	}
	// CPU per query of the rounds that ran: 3, 1 and 5 µs, whose median is 3 µs.
	if got := float64(m.cpu) / m.qps; got != 3000 {
		t.Fatalf("median cpu per query = %.0f ns, want 3000", got)
	}
	if s := median([]result{{name: "nsd", skipped: "no"}}); s.skipped != "no" {
		t.Fatalf("median of skipped rounds = %+v, want the skip", s)
	}
}

func TestMeasureRoundsStartsEachRoundOneTargetLater(t *testing.T) {
	var order []string
	start := func(name string) startFunc {
		return func(context.Context, string, string) (running, error) {
			order = append(order, name)
			return running{}, errors.New("not started")
		}
	}
	ts := []target{{name: "a", start: start("a")}, {name: "b", start: start("b")}, {name: "c", start: start("c")}}
	got, err := measureRounds(context.Background(), options{rounds: 3}, t.TempDir(), ts, func(result, int) {})
	if err != nil {
		t.Fatal(err)
	}
	if want := "abcbcacab"; strings.Join(order, "") != want {
		t.Fatalf("order = %s, want %s", strings.Join(order, ""), want)
	}
	for i, rs := range got {
		if len(rs) != 3 || rs[0].name != ts[i].name {
			t.Fatalf("results of %s = %+v, want 3 rounds of it", ts[i].name, rs)
		}
	}
}

func TestARoundThatAnsweredNothingIsShownAsFailedAndPrintsNoNaN(t *testing.T) {
	ok := func(p99 time.Duration) result {
		return result{name: "detour", qps: 20000, p50: time.Millisecond / 10, p99: p99, cpu: 100 * time.Millisecond}
	}
	rounds := [][]result{
		{ok(2 * time.Millisecond), {name: "detour"}, ok(4 * time.Millisecond)},
		{{name: "knot", skipped: "knotd is not installed"}, {name: "knot"}, {name: "knot"}},
	}
	var out strings.Builder
	reportLoad(&out, options{load: 20000, clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 3}, rounds)
	got := out.String()
	for _, want := range []string{
		"detour  0.100 · - · 0.100",
		"2.000 · - · 4.000",
		"failed: detour round 2: no query answered",
		"failed: knot round 1: knotd is not installed",
		"knot    -",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "NaN") || strings.Contains(got, "Inf") {
		t.Errorf("report prints a figure that is not a number:\n%s", got)
	}
	if m := median(rounds[0]); m.p99 != 3*time.Millisecond {
		t.Errorf("median p99 over the rounds that answered = %s, want 3ms", m.p99)
	}
}

// TestTheSaturationAndHealthReportsListTheRoundsTheyLeaveOut holds the other two reports to what
// the latency report does: a round that failed (a -pin run whose threads left their CPU, say) is
// named with why, not silently left out of the median.
func TestTheSaturationAndHealthReportsListTheRoundsTheyLeaveOut(t *testing.T) {
	o := options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 3}
	ok := func(name string, qps float64) result {
		return result{name: name, qps: qps, cpu: 100 * time.Millisecond}
	}
	stray := result{name: "knot", skipped: "-pin: by the end of the run thread 7 (knotd, CPUs 1) had left CPU 0"}
	sat := [][]result{
		{ok("detour", 100000), ok("detour", 110000), ok("detour", 120000)},
		{ok("knot", 90000), stray, ok("knot", 95000)},
	}
	var out strings.Builder
	report(&out, o, medians(sat), sat)
	if want := "failed: knot round 2: " + stray.skipped; !strings.Contains(out.String(), want) {
		t.Errorf("saturation report lacks %q:\n%s", want, out.String())
	}
	health := [][]result{
		{ok("detour", 100000), {name: "detour"}, ok("detour", 120000)},
		{ok("powerdns-lua", 30000), ok("powerdns-lua", 31000), ok("powerdns-lua", 32000)},
	}
	out.Reset()
	reportHealth(&out, o, health)
	if want := "failed: detour round 2: no query answered"; !strings.Contains(out.String(), want) {
		t.Errorf("health-aware report lacks %q:\n%s", want, out.String())
	}
}

func TestVariantNamesAProgramAndItsEnvironment(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want variant
		err  bool
	}{
		{in: "gcoff=GOGC=off", want: variant{name: "detour-gcoff", env: []string{"GOGC=off"}}},
		{in: "old=/tmp/dnsbench-main", want: variant{name: "detour-old", program: "/tmp/dnsbench-main"}},
		{in: "old=/tmp/b,GOGC=off,GODEBUG=gctrace=1", want: variant{name: "detour-old", program: "/tmp/b", env: []string{"GOGC=off", "GODEBUG=gctrace=1"}}},
		{in: "s1=,DNSP_SOCKETS=1", want: variant{name: "detour-s1", env: []string{"DNSP_SOCKETS=1"}}},
		{in: "nospec", err: true},
		{in: "=GOGC=off", err: true},
		{in: "x=GOGC=off,/tmp/b", err: true},
		{in: "x=/tmp/b,", err: true},
		{in: "changing=GOGC=off", err: true},
		{in: "control=GOGC=off", err: true},
		{in: "../../escaped=GOGC=off", err: true},
		{in: "a/b=GOGC=off", err: true},
		{in: ".hidden=GOGC=off", err: true},
		{in: "v1.2_x-y=GOGC=off", want: variant{name: "detour-v1.2_x-y", env: []string{"GOGC=off"}}},
	} {
		got, err := parseVariant(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("parseVariant(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && (got.name != tc.want.name || got.program != tc.want.program || strings.Join(got.env, " ") != strings.Join(tc.want.env, " ")) {
			t.Errorf("parseVariant(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestTwoVariantsOfOneNameAreRefused(t *testing.T) {
	vs, err := addVariant(nil, "old=/tmp/a")
	if err != nil {
		t.Fatal(err)
	}
	if vs, err = addVariant(vs, "new=/tmp/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := addVariant(vs, "old=GOGC=off"); err == nil || !strings.Contains(err.Error(), "old is given twice") {
		t.Errorf("a second variant named old: error = %v, want one naming it", err)
	}
}

func TestAnEmptyVariantSaysWhatIsMissing(t *testing.T) {
	_, err := parseVariant("x=")
	if err == nil || !strings.Contains(err.Error(), "nothing after the =") {
		t.Errorf("parseVariant(\"x=\") error = %v, want it to say nothing follows the =", err)
	}
}

func TestAVariantIsComparedWithThePeersAndIsNotOneOfThem(t *testing.T) {
	r := func(name string, p99 time.Duration) []result {
		return []result{{name: name, qps: 20000, p50: time.Millisecond / 10, p99: p99, cpu: 100 * time.Millisecond}}
	}
	var out strings.Builder
	reportLoad(&out, options{load: 20000, clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 1},
		[][]result{r("detour", 4*time.Millisecond), r("detour-wait", time.Millisecond), r("nsd", 2*time.Millisecond)})
	for _, want := range []string{
		"detour p99 / best peer's (nsd), medians of the rounds: 2.00",
		"detour-wait p99 / best peer's (nsd), medians of the rounds: 0.50",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestEachRoundIsComparedWithThatRoundsBestPeer(t *testing.T) {
	p99 := func(name string, ms ...float64) []result {
		var rs []result
		for _, m := range ms {
			if m == 0 {
				rs = append(rs, result{name: name, skipped: "failed"})
				continue
			}
			rs = append(rs, result{name: name, qps: 20000, p99: time.Duration(m * float64(time.Millisecond))})
		}
		return rs
	}
	// Round 1: knot is the best peer (0.5), round 2 nsd (0.8); in round 3 detour failed, and
	// in round 4 no peer answered: neither is compared.
	d := p99("detour", 0.4, 1.2, 0, 0.3)
	got := perRound(d, [][]result{p99("nsd", 0.6, 0.8, 0.5, 0), p99("knot", 0.5, 0.9, 0.4, 0)}, p99Of, true, 1.0)
	if want := "0.80 · 1.50  (1 of 2 rounds <= 1.0)"; got != want {
		t.Errorf("p99 per round = %q, want %q", got, want)
	}
	qps := func(name string, q ...float64) []result {
		var rs []result
		for _, v := range q {
			rs = append(rs, result{name: name, qps: v})
		}
		return rs
	}
	got = perRound(qps("detour", 90000, 60000), [][]result{qps("powerdns-lua", 20000, 30000)}, qpsOf, false, 3.0)
	if want := "4.50 · 2.00  (1 of 2 rounds >= 3.0)"; got != want {
		t.Errorf("qps per round = %q, want %q", got, want)
	}
	if got := perRound(d[2:3], [][]result{qps("nsd", 1)}, p99Of, true, 1.0); got != "no round to compare" {
		t.Errorf("no comparable round = %q", got)
	}
}

func TestTheSaturationReportGivesEveryRoundsRatio(t *testing.T) {
	rounds := [][]result{
		{{name: "detour", qps: 100000, cpu: time.Second}, {name: "detour", qps: 80000, cpu: time.Second}, {name: "detour", qps: 90000, cpu: time.Second}},
		{{name: "nsd", qps: 90000, cpu: time.Second}, {name: "nsd", qps: 90000, cpu: time.Second}, {name: "nsd", qps: 60000, cpu: time.Second}},
		{{name: "knot", qps: 95000, cpu: time.Second}, {name: "knot", qps: 70000, cpu: time.Second}, {name: "knot", skipped: "knotd is not installed"}},
	}
	var out strings.Builder
	o := options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 3}
	report(&out, o, medians(rounds), rounds)
	for _, want := range []string{
		// Medians: detour 90,000, nsd 90,000, knot 82,500.
		"detour / best static peer (nsd): 1.00",
		"per round, against that round's best static peer: 1.05 · 0.89 · 1.50  (2 of 3 rounds >= 1.0)",
		// No latency columns: saturation runs measure none.
		"server  qps    lost %  server cpu µs/query",
		"detour  90000  0.00",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "p99") {
		t.Errorf("the saturation report shows a latency it did not measure:\n%s", out.String())
	}
}

func TestOnlyTheLatencyRunsTableHasLatencyColumns(t *testing.T) {
	rs := []result{{name: "detour", qps: 20000, p50: 50 * time.Microsecond, p99: 400 * time.Microsecond, cpu: time.Second}}
	o := options{duration: 5 * time.Second}
	var sat, atLoad strings.Builder
	writeTable(&sat, o, rs)
	o.load = 20000
	writeTable(&atLoad, o, rs)
	if strings.Contains(sat.String(), "p99") {
		t.Errorf("saturation table has latency columns:\n%s", sat.String())
	}
	if !strings.Contains(atLoad.String(), "p99 ms") || !strings.Contains(atLoad.String(), "0.050   0.400") {
		t.Errorf("latency run's table lacks p50 0.050 and p99 0.400 ms:\n%s", atLoad.String())
	}
}

func TestTheChangesNoteCountsOnlyTheRoundsThatAnswered(t *testing.T) {
	var c changeCounter
	tally := changeTally{what: "answer changes applied"}
	ok := result{name: "detour-changing", qps: 90000, ownCPU: 400 * time.Millisecond, ran: 5 * time.Second}
	// Round 1 answered with 500 changes in 5 s; round 2's server never started, so it left the
	// counter as round 1 had; round 3's dnsperf failed after 20 changes; round 4 answered with
	// 510 in 5.1 s.
	c.n, c.changing = 500, 5*time.Second
	tally.add(ok, &c)
	tally.add(result{name: "detour-changing", skipped: "find a free port: none free"}, &c)
	c.n, c.changing = 20, time.Second
	tally.add(result{name: "detour-changing", skipped: "run dnsperf: exit status 1", ownCPU: time.Second, ran: time.Second}, &c)
	c.n, c.changing = 510, 5100*time.Millisecond
	tally.add(ok, &c)
	// This program's CPU is counted over the same rounds: 0.8 s in 10 s.
	if got, want := tally.note(), "1010 answer changes applied in 2 rounds (100/s); dnsbench itself (its JetStream, the changes, the checked ports) took 0.08 cores"; got != want {
		t.Errorf("note = %q, want %q", got, want)
	}
}

// TestTheChangesNoteGivesTheirRateOverTheTimeTheyWentOn: dnsperf waits past its duration for
// the answers to queries lost at its end, and the changes go on from the server's start to its
// stop; their rate and this program's cores are over the times they took, not the duration
// asked for (a round of 5 s whose dnsperf waited 2.5 s more made 750 changes at 100 a second,
// not 150).
func TestTheChangesNoteGivesTheirRateOverTheTimeTheyWentOn(t *testing.T) {
	c := changeCounter{n: 750, changing: 7500 * time.Millisecond}
	tally := changeTally{what: "answer changes applied"}
	tally.add(result{name: "detour-changing", qps: 90000, ownCPU: 1500 * time.Millisecond, ran: 7500 * time.Millisecond}, &c)
	if got, want := tally.note(), "750 answer changes applied in 1 rounds (100/s); dnsbench itself (its JetStream, the changes, the checked ports) took 0.20 cores"; got != want {
		t.Errorf("note = %q, want %q", got, want)
	}
	if n, changing := c.take(); n != 0 || changing != 0 {
		t.Errorf("the counter after its round was added: %d changes in %s, want it emptied", n, changing)
	}
}

// TestTheChangingRunIsHeldToTheControlRun: the target compares the run whose server follows
// the changes with the control run, which publishes the same changes where the server does
// not follow them, so that dnsbench's own JetStream weighs on both; the ratio to the static run
// is shown beside it, and both are shown whether or not the static run ran.
func TestTheChangingRunIsHeldToTheControlRun(t *testing.T) {
	rounds := [][]result{
		{{name: "detour", qps: 100000}, {name: "detour", qps: 100000}},
		{{name: "detour-changing", qps: 72000}, {name: "detour-changing", qps: 81000}},
		{{name: "detour-control", qps: 80000}, {name: "detour-control", qps: 100000}},
	}
	o := options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 2}
	var out strings.Builder
	report(&out, o, medians(rounds), rounds)
	for _, want := range []string{
		// Medians: detour 100,000, detour-changing 76,500, detour-control 90,000.
		"detour-changing / detour:         0.77",
		"detour-changing / detour-control: 0.85  (target >= 0.9",
		"per round: 0.90 · 0.81  (1 of 2 rounds >= 0.9)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	report(&out, o, medians(rounds[1:]), rounds[1:])
	if want := "detour-changing / detour-control: 0.85"; !strings.Contains(out.String(), want) {
		t.Errorf("without the static run, the report lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "detour-changing / detour: ") {
		t.Errorf("without the static run, the report compares with it:\n%s", out.String())
	}
	out.Reset()
	report(&out, o, medians(rounds[:2]), rounds[:2])
	if want := "detour-control did not run: the target (>= 0.9) is not evaluated"; !strings.Contains(out.String(), want) {
		t.Errorf("without the control run, the report lacks %q:\n%s", want, out.String())
	}
}

// TestTheControlDiffersFromTheChangingRunOnlyInWhereItsChangesGo: the two runs make the same
// changes at the same rate; the control's go aside and are counted there, detour-changing's go
// to STATE and are counted as the zone changes the server recorded; each keeps its own count and
// tally; the control runs first; no other target makes changes.
func TestTheControlDiffersFromTheChangingRunOnlyInWhereItsChangesGo(t *testing.T) {
	ts := targetList(8053, options{changes: 100, variants: []variant{{name: "detour-old"}}})
	var names []string
	for _, tg := range ts {
		names = append(names, tg.name)
		if tg.flips != nil && tg.name != "detour-changing" && tg.name != "detour-control" {
			t.Errorf("%s makes state changes beside it", tg.name)
		}
	}
	if got, want := strings.Join(names, " "), "detour detour-old nsd knot powerdns powerdns-lua detour-control detour-changing"; got != want {
		t.Errorf("targets %s, want %s", got, want)
	}
	control, changing := flipsOf(ts, "detour-control"), flipsOf(ts, "detour-changing")
	if control == nil || changing == nil {
		t.Fatalf("changes beside detour-control %v and detour-changing %v, want both", control, changing)
	}
	if control.perSecond != 100 || changing.perSecond != 100 {
		t.Errorf("changes a second: control %d, changing %d, want -changes (100) for both", control.perSecond, changing.perSecond)
	}
	if !control.aside || changing.aside {
		t.Errorf("aside: control %v, changing %v, want only the control's aside", control.aside, changing.aside)
	}
	if control.stream() != streamAside || changing.stream() != events.StreamDNS {
		t.Errorf("counted in: control %s, changing %s, want %s and %s", control.stream(), changing.stream(), streamAside, events.StreamDNS)
	}
	if control == changing {
		t.Error("the two runs share one count")
	}
	if !strings.Contains(control.tally.what, "does not follow") || changing.tally.what != "answer changes applied" {
		t.Errorf("notes: control %q, changing %q", control.tally.what, changing.tally.what)
	}
}

func TestAVariantsSaturationRatioIsGivenRoundByRound(t *testing.T) {
	rounds := [][]result{
		{{name: "detour", qps: 100000, cpu: time.Second}, {name: "detour", qps: 90000, cpu: time.Second}},
		{{name: "detour-old", qps: 80000, cpu: time.Second}, {name: "detour-old", qps: 99000, cpu: time.Second}},
		{{name: "knot", qps: 100000, cpu: time.Second}, {name: "knot", qps: 90000, cpu: time.Second}},
	}
	var out strings.Builder
	o := options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 2, variants: []variant{{name: "detour-old"}}}
	report(&out, o, medians(rounds), rounds)
	want := "detour-old / best static peer (knot): 0.94\n  per round, against that round's best static peer: 0.80 · 1.10  (1 of 2 rounds >= 1.0)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}

// TestAVariantThatFollowsTheChangesIsHeldToTheControlRun: with -variant-changes every variant
// makes the same changes beside it as detour-changing, counted apart, runs after it and has no
// latency run; the report reads it against detour-control and detour-changing round by round,
// not against the peers.
func TestAVariantThatFollowsTheChangesIsHeldToTheControlRun(t *testing.T) {
	o := options{changes: 100, variants: []variant{{name: "detour-new"}, {name: "detour-b"}}, variantsChange: true}
	ts := targetList(8053, o)
	var names []string
	for _, tg := range ts {
		names = append(names, tg.name)
	}
	if got, want := strings.Join(names, " "), "detour nsd knot powerdns powerdns-lua detour-control detour-changing detour-new detour-b"; got != want {
		t.Errorf("targets %s, want %s", got, want)
	}
	changing := flipsOf(ts, "detour-changing")
	for _, name := range []string{"detour-new", "detour-b"} {
		v := flipsOf(ts, name)
		if v == nil {
			t.Fatalf("no changes beside %s, so no latency run left out", name)
		}
		if v == changing || v.perSecond != 100 || v.aside || v.stream() != events.StreamDNS || v.tally.what != "zone changes the server recorded" {
			t.Errorf("%s's changes %+v, want detour-changing's (%+v) with a count of their own", name, *v, *changing)
		}
	}
	if flipsOf(ts, "detour-new") == flipsOf(ts, "detour-b") {
		t.Error("two variants share one count")
	}
	if got, want := strings.Join(onlyTargets("detour-changing", o), ","), "detour-changing,detour-new,detour-b,detour-control"; got != want {
		t.Errorf("-only detour-changing runs %s, want %s", got, want)
	}
	if got, want := strings.Join(onlyTargets("detour,knot", options{}), ","), "detour,knot"; got != want {
		t.Errorf("-only detour,knot without variants runs %s, want %s", got, want)
	}
	if err := checkVariantChanges(options{variantsChange: true}); err == nil || !strings.Contains(err.Error(), "-variant") {
		t.Errorf("-variant-changes without a variant: %v, want it refused", err)
	}
	if err := checkVariantChanges(o); err != nil {
		t.Errorf("-variant-changes with variants refused: %v", err)
	}

	// A variant slower than every server of the latency run does not set its load.
	sat := []result{{name: "detour", qps: 100000}, {name: "knot", qps: 90000}, {name: "detour-new", qps: 20000}, {name: "detour-changing", qps: 30000}}
	if got := slowestAtLoad(sat, ts); got != 90000 {
		t.Errorf("the latency run's load is set from %.0f qps, want knot's 90000", got)
	}

	rounds := [][]result{
		{{name: "detour", qps: 100000}, {name: "detour", qps: 100000}},
		{{name: "knot", qps: 90000}, {name: "knot", qps: 90000}},
		{{name: "detour-control", qps: 80000}, {name: "detour-control", qps: 100000}},
		{{name: "detour-changing", qps: 72000}, {name: "detour-changing", qps: 81000}},
		{{name: "detour-new", qps: 76000}, {name: "detour-new", qps: 99000}},
		{{name: "detour-b", skipped: "start detour: exit status 1"}, {name: "detour-b", qps: 90000}},
	}
	o = options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 2, variants: o.variants, variantsChange: true}
	var out strings.Builder
	report(&out, o, medians(rounds), rounds)
	for _, want := range []string{
		"detour-changing / detour-control: 0.85  (target >= 0.9",
		// Medians: detour-new 87,500, detour-control 90,000, detour-changing 76,500.
		"detour-new / detour-control:      0.97  (target >= 0.9: a variant following the changes detour-changing follows)\n  per round: 0.95 · 0.99  (2 of 2 rounds >= 0.9)\n",
		"detour-new / detour-changing: 1.14  (this build's server following the same changes)\n  per round: 1.06 · 1.22  (2 of 2 rounds >= 1.0)\n",
		// detour-b answered in round 2 only: its median is that round's, and its per-round
		// ratios leave round 1 out.
		"detour-b / detour-control:        1.00  (target >= 0.9: a variant following the changes detour-changing follows)\n  per round: 0.90  (1 of 1 rounds >= 0.9)\n",
		"detour-b / detour-changing: 1.18  (this build's server following the same changes)\n  per round: 1.11  (1 of 1 rounds >= 1.0)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "best static peer (knot): 0.97") || strings.Contains(out.String(), "detour-new / best static peer") {
		t.Errorf("the report holds a variant following changes to the static peers:\n%s", out.String())
	}
	out.Reset()
	report(&out, o, medians(rounds[:2]), rounds[:2])
	if strings.Contains(out.String(), "detour-new /") {
		t.Errorf("a variant that did not run is reported:\n%s", out.String())
	}
	out.Reset()
	alone := [][]result{rounds[0], rounds[1], rounds[4]}
	report(&out, o, medians(alone), alone)
	if want := "detour-new / detour-control: not measured, detour-control did not run"; !strings.Contains(out.String(), want) {
		t.Errorf("without the control run, the report lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "detour-new / detour-changing") {
		t.Errorf("without detour-changing, the report compares with it:\n%s", out.String())
	}
}

// TestTheHealthReportBreaksTheQPSRatioIntoCostsAndCPUsUsed holds the health-aware report to the
// sum a reader needs when the servers share their CPUs with dnsperf: what an answer costs the
// machine, the server's CPU and dnsperf's, and the CPUs each run used, each the median over the
// rounds that answered (a round's costs are not mixed with another's qps). Pinned, dnsperf has a
// CPU of its own and the lines are left out.
func TestTheHealthReportBreaksTheQPSRatioIntoCostsAndCPUsUsed(t *testing.T) {
	o := options{clients: 10, outstanding: 100, duration: 5 * time.Second, rounds: 4}
	// Detour's rounds cost 5 + 7, 6 + 6 and 6 + 8 µs a query (server + dnsperf) and used 1.20,
	// 1.44 and 1.54 CPUs; its fourth round answered nothing. PowerDNS-Lua: 17 + 7 µs, 0.96 CPUs.
	// dnsperf's median CPU over the median qps would be 6.55 µs, a figure of no round.
	round := func(name string, qps float64, server, client time.Duration) result {
		return result{name: name, qps: qps, cpu: server, clientCPU: client}
	}
	health := [][]result{
		{
			round("detour", 100000, 2500*time.Millisecond, 3500*time.Millisecond),
			round("detour", 120000, 3600*time.Millisecond, 3600*time.Millisecond),
			round("detour", 110000, 3300*time.Millisecond, 4400*time.Millisecond),
			{name: "detour"},
		},
		{
			round("powerdns-lua", 40000, 3400*time.Millisecond, 1400*time.Millisecond),
			round("powerdns-lua", 40000, 3400*time.Millisecond, 1400*time.Millisecond),
			round("powerdns-lua", 40000, 3400*time.Millisecond, 1400*time.Millisecond),
			round("powerdns-lua", 40000, 3400*time.Millisecond, 1400*time.Millisecond),
		},
	}
	var out strings.Builder
	reportHealth(&out, o, health)
	for _, want := range []string{
		"CPU per answer, server + dnsperf: detour 6.00 + 7.00 µs, powerdns-lua 17.00 + 7.00 µs; CPUs used, server + dnsperf: detour 1.44, powerdns-lua 0.96 of ",
		// 110,000 / 40,000 = 2.75; (17 + 7) / (6 + 7) = 1.85; 1.44 / 0.96 = 1.50.
		"qps ratio 2.75 ≈ cost ratio 1.85 × CPUs-used ratio 1.50",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("health-aware report lacks %q:\n%s", want, out.String())
		}
	}
	// -mix app asks the app name only in the saturation run too, which then reports the same.
	app := o
	app.mix = "app"
	var sat strings.Builder
	report(&sat, app, medians(health), health)
	if want := "qps ratio 2.75 ≈ cost ratio 1.85 × CPUs-used ratio 1.50"; !strings.Contains(sat.String(), want) {
		t.Errorf("saturation report of the app name only lacks %q:\n%s", want, sat.String())
	}
	// A run whose server CPU was not read has no breakdown: half of it would be missing.
	unread := [][]result{health[0], slices.Clone(health[1])}
	for i := range unread[1] {
		unread[1][i].cpu = 0
	}
	var none strings.Builder
	report(&none, app, medians(unread), unread)
	if strings.Contains(none.String(), "server + dnsperf") {
		t.Errorf("with PowerDNS-Lua's CPU unread, the report still breaks the ratio into costs:\n%s", none.String())
	}
	was := pinned
	pinned = true
	t.Cleanup(func() { pinned = was })
	out.Reset()
	reportHealth(&out, o, health)
	sat.Reset()
	report(&sat, app, medians(health), health)
	if strings.Contains(out.String()+sat.String(), "server + dnsperf") {
		t.Errorf("pinned, a report still breaks the ratio into shared costs:\n%s\n%s", out.String(), sat.String())
	}
}
