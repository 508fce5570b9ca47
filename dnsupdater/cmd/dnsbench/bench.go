package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/miekg/dns"
)

type options struct {
	duration    time.Duration
	clients     int
	outstanding int
	changes     int
	only        []string
	profile     string
	// load, when above 0, caps dnsperf at this many queries per second (-Q): the latency run.
	load float64
	// atLoad, when above 0, is the common load of the latency run instead of half the slowest
	// saturation.
	atLoad float64
	// latency runs every server a second time at one common load, half the slowest
	// saturation, so that p50 and p99 compare servers doing the same work.
	latency bool
	// rounds is how many times each run (saturation, health-aware, latency) measures every
	// server.
	rounds int
	// mix names the queries: "mixed" (the app name half the time, static names the rest) or
	// "app" (the app name only).
	mix string
	// queries is the file of queries dnsperf sends, written by bench.
	queries string
	// pdnsCache is PowerDNS's packet cache TTL in seconds (its default, 20; 0 turns it off).
	pdnsCache int
	// variants are other builds of Detour's server, or this one with another environment,
	// measured beside it in the same run (-variant).
	variants []variant
	// variantsChange, when set, has every variant follow state changes as detour-changing
	// does, and reads it against detour-control rather than the peers (-variant-changes): a
	// variant then measures the path a change takes through the server.
	variantsChange bool
	// stages, when set, traces one more run per server at the common load (-stages).
	stages *stageTracer
	// keep, when set, is a directory where each latency run's dnsperf output (a line per query,
	// in the order the answers came) is kept, as keepAs: SERVER-round-N.txt (SERVER-stages.txt for -stages).
	keep, keepAs string
	// network says which network namespace the servers and dnsperf run in (-netns).
	network string
}

// variant is Detour's server run as program's serve-detour (this program's when empty), with env
// (K=V) added to its environment.
type variant struct {
	name    string
	program string
	env     []string
}

// parseVariant reads -variant's NAME=[PROGRAM][,K=V...].
func parseVariant(s string) (variant, error) {
	name, spec, _ := strings.Cut(s, "=")
	if name == "" || strings.ContainsAny(name, ", ") {
		return variant{}, fmt.Errorf("want NAME=[PROGRAM][,K=V...], got %q", s)
	}
	// The name becomes a directory's and a file's (-keep): it must stay one name in its directory.
	if strings.HasPrefix(name, ".") || strings.ContainsFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return variant{}, fmt.Errorf("%q: a variant's name is letters, digits, -, _ and . (not first), got %q", s, name)
	}
	if spec == "" {
		return variant{}, fmt.Errorf("%q: nothing after the =: give a program, K=V items or both", s)
	}
	if slices.Contains(targetNames, "detour-"+name) {
		return variant{}, fmt.Errorf("%q: %s is a target of its own, name the variant otherwise", s, "detour-"+name)
	}
	v := variant{name: "detour-" + name}
	for i, item := range strings.Split(spec, ",") {
		switch k, _, isEnv := strings.Cut(item, "="); {
		case isEnv && k != "":
			v.env = append(v.env, item)
		case i == 0:
			v.program = item // empty: this program
		default:
			return variant{}, fmt.Errorf("%q: want the program first, then K=V items, got %q", s, item)
		}
	}
	return v, nil
}

// addVariant adds the variant s names to vs, refusing a name already there: the report finds
// each target's rounds by name, and two variants of one name would be read as one.
func addVariant(vs []variant, s string) ([]variant, error) {
	v, err := parseVariant(s)
	if err != nil {
		return vs, err
	}
	for _, o := range vs {
		if o.name == v.name {
			return vs, fmt.Errorf("%q: a variant named %s is given twice", s, strings.TrimPrefix(v.name, "detour-"))
		}
	}
	return append(vs, v), nil
}

// running is a server under test, started.
type running struct {
	// cpu returns the CPU time (user and system) the server and its children used so far.
	cpu func() time.Duration
	// pid is the server's process.
	pid int
	// stop stops the server and waits for it to exit.
	stop func()
}

// startFunc brings a server up on addr.
type startFunc func(ctx context.Context, dir, addr string) (running, error)

// target is one server under test; flips, when set, are the state changes made beside it
// (detour-changing, detour-control, and the variants with -variant-changes), which only the
// saturation run measures.
type target struct {
	name  string
	start startFunc
	flips *changeFlips
}

var targetNames = []string{"detour", "nsd", "knot", "powerdns", "powerdns-lua", "detour-control", "detour-changing"}

// result is what dnsperf measured against one target.
type result struct {
	name string
	qps  float64
	p50  time.Duration
	p99  time.Duration
	lost float64
	// cpu is the server's CPU time while dnsperf ran, and clientCPU dnsperf's own; ownCPU is
	// this program's, which hosts the JetStream Detour follows and, for detour-changing and
	// detour-control, makes their changes.
	cpu, clientCPU, ownCPU time.Duration
	// ran is how long dnsperf ran: the duration asked for, and longer when it waited for the
	// answers of queries lost at its end.
	ran time.Duration
	// steal is the share of the machine's CPU time, in per cent, that the hypervisor held
	// runnable CPUs while dnsperf ran (/proc/stat); -1 where the kernel does not say.
	steal   float64
	note    string
	skipped string
}

func bench(ctx context.Context, o options, out io.Writer) error {
	if _, err := lookPath("dnsperf"); err != nil {
		return fmt.Errorf("dnsperf (Debian package dnsperf) is not installed: run deployments/install-packages.sh deployments/packages/bench.txt")
	}
	if pinned {
		if _, err := lookPath("taskset"); err != nil {
			return fmt.Errorf("-pin: taskset (Debian package util-linux) is not installed")
		}
		if runtime.NumCPU() < 2 {
			return fmt.Errorf("-pin: needs 2 CPUs, this machine has %d", runtime.NumCPU())
		}
		if err := canFindChildren(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%s\n\n", o.network)
	dir, err := os.MkdirTemp(workRoot(), "dnsbench-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(dir)
	qs := queries
	if o.mix == "app" {
		qs = appQueries
	}
	o.queries = filepath.Join(dir, "queries.txt")
	appOnly := filepath.Join(dir, "app.txt")
	if err := writeFiles(dir, map[string]string{"queries.txt": qs, "app.txt": appQueries}); err != nil {
		return fmt.Errorf("write queries: %w", err)
	}
	// Health-checked answers need something listening on the checked port of both endpoints.
	backends, port, err := listenBackends()
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range backends {
			l.Close()
		}
	}()
	targets := targetList(port, o)
	var sat []target
	for _, t := range targets {
		if selected(o, t.name) {
			sat = append(sat, t)
		}
	}
	satRounds, err := measureRounds(ctx, o, dir, sat, func(r result, round int) {
		if f := flipsOf(sat, r.name); f != nil {
			f.tally.add(r, &f.counter)
		}
		fmt.Fprintf(os.Stderr, "dnsbench: %s, round %d, done\n", r.name, round+1)
	})
	if err != nil {
		return err
	}
	results := medians(satRounds)
	for i := range results {
		if f := flipsOf(sat, results[i].name); f != nil && results[i].skipped == "" {
			results[i].note = f.tally.note()
		}
	}
	report(out, o, results, satRounds)
	if o.mix != "app" && selected(o, "detour") && selected(o, "powerdns-lua") {
		// The health-aware answer alone: with the mixed queries, half of PowerDNS's answers
		// are static names served from its packet cache, which Lua answers never enter.
		ho := o
		ho.queries = appOnly
		var pair []target
		for _, t := range targets {
			if t.name == "detour" || t.name == "powerdns-lua" {
				pair = append(pair, t)
			}
		}
		health, err := measureRounds(ctx, ho, dir, pair, func(r result, round int) {
			fmt.Fprintf(os.Stderr, "dnsbench: %s, app name only, round %d, done\n", r.name, round+1)
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
		reportHealth(out, ho, health)
	}
	if !o.latency {
		return nil
	}
	slowest := slowestAtLoad(results, targets)
	if slowest == 0 {
		if o.stages != nil {
			fmt.Fprintln(out, "\nno server the latency run measures answered at saturation: no latency run and nothing for -stages to trace")
		}
		return nil
	}
	lo := o
	lo.load = float64(int(slowest/2/1000)) * 1000
	if lo.load == 0 {
		// Under 2,000 qps (a broken setup): still a load, since only a run with -Q measures latency.
		lo.load = max(float64(int(slowest/2)), 1)
	}
	if o.atLoad > 0 {
		lo.load = o.atLoad
	}
	var atLoad []target
	for _, t := range targets {
		if selected(o, t.name) && t.flips == nil {
			atLoad = append(atLoad, t)
		}
	}
	rounds, err := measureRounds(ctx, lo, dir, atLoad, func(r result, round int) {
		fmt.Fprintf(os.Stderr, "dnsbench: %s at %.0f qps, round %d, done\n", r.name, lo.load, round+1)
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	reportLoad(out, lo, rounds)
	if o.stages == nil {
		return nil
	}
	var stages []stageResult
	for _, t := range atLoad {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		stages = append(stages, measureStages(ctx, lo, dir, t))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "dnsbench: %s at %.0f qps, traced, done\n", t.name, lo.load)
	}
	fmt.Fprintln(out)
	reportStages(out, lo, stages)
	return nil
}

// slowestAtLoad is the lowest qps at saturation (results) among the targets the latency run
// measures, those without changes beside them: the common load is half of it, so that no server
// queues. 0 when none of them answered.
func slowestAtLoad(results []result, targets []target) float64 {
	slowest := 0.0
	for _, r := range results {
		if flipsOf(targets, r.name) == nil && r.skipped == "" && (slowest == 0 || r.qps < slowest) {
			slowest = r.qps
		}
	}
	return slowest
}

// targetList is every server a run can measure, in the order of the first round: Detour's (static,
// then each variant), the peers, then the two runs with state changes beside them, and after
// them the variants instead when they follow the changes too (-variant-changes), each counting
// the zone changes its server recorded.
func targetList(port int, o options) []target {
	targets := []target{{name: "detour", start: detourTarget(port, nil, o.profile, variant{})}}
	if !o.variantsChange {
		for _, v := range o.variants {
			targets = append(targets, target{name: v.name, start: detourTarget(port, nil, "", v)})
		}
	}
	targets = append(targets, []target{
		{name: "nsd", start: nsdTarget},
		{name: "knot", start: knotTarget},
		{name: "powerdns", start: pdnsTarget(false, port, o.pdnsCache)},
		{name: "powerdns-lua", start: pdnsTarget(true, port, o.pdnsCache)},
	}...)
	for _, t := range []struct {
		name string
		f    *changeFlips
	}{
		{"detour-control", &changeFlips{perSecond: o.changes, aside: true, tally: changeTally{what: "changes published to a stream the server does not follow"}}},
		{"detour-changing", &changeFlips{perSecond: o.changes, tally: changeTally{what: "answer changes applied"}}},
	} {
		targets = append(targets, target{name: t.name, start: detourTarget(port, t.f, "", variant{}), flips: t.f})
	}
	if o.variantsChange {
		for _, v := range o.variants {
			f := &changeFlips{perSecond: o.changes, tally: changeTally{what: "zone changes the server recorded"}}
			targets = append(targets, target{name: v.name, start: detourTarget(port, f, "", v), flips: f})
		}
	}
	return targets
}

// flipsOf is the state changes made beside the target name of ts, or nil when it has none.
func flipsOf(ts []target, name string) *changeFlips {
	for _, t := range ts {
		if t.name == name {
			return t.flips
		}
	}
	return nil
}

// startAnswering starts a target in its own directory on a free address and waits until it
// answers; the caller stops it.
func startAnswering(ctx context.Context, dir string, t target) (running, string, error) {
	tdir := filepath.Join(dir, t.name)
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return running{}, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return running{}, "", err
	}
	srv, err := t.start(ctx, tdir, addr)
	if err != nil {
		return running{}, "", err
	}
	if err := waitAnswer(ctx, addr, 20*time.Second); err != nil {
		srv.stop()
		return running{}, "", err
	}
	if pinned {
		if err := confine(ctx, srv.pid); err != nil {
			srv.stop()
			return running{}, "", err
		}
	}
	return srv, addr, nil
}

// measure starts a target, runs dnsperf against it and stops it.
func measure(ctx context.Context, o options, dir string, t target) result {
	srv, addr, err := startAnswering(ctx, dir, t)
	if err != nil {
		return result{name: t.name, skipped: err.Error()}
	}
	defer srv.stop()
	before, ownBefore := srv.cpu(), ownCPU()
	stole, known := hostSteal()
	began := time.Now()
	r, err := dnsperf(ctx, o, o.queries, addr)
	ran := time.Since(began)
	if err != nil {
		return result{name: t.name, skipped: err.Error()}
	}
	if err := strayed(srv.pid); err != nil {
		return result{name: t.name, skipped: err.Error()}
	}
	r.name, r.cpu, r.ownCPU, r.ran, r.steal = t.name, srv.cpu()-before, ownCPU()-ownBefore, ran, -1
	if now, ok := hostSteal(); known && ok {
		r.steal = 100 * float64(now-stole) / (float64(time.Since(began)) * float64(runtime.NumCPU()))
	}
	return r
}

// measureStages runs a target once at o.load with its system calls traced (-stages) and
// returns its stages.
func measureStages(ctx context.Context, o options, dir string, t target) stageResult {
	skip := func(err error) stageResult { return stageResult{name: t.name, skipped: err.Error()} }
	srv, addr, err := startAnswering(ctx, dir, t)
	if err != nil {
		return skip(err)
	}
	defer srv.stop()
	if err := o.stages.start(); err != nil {
		return skip(err)
	}
	o.keepAs = t.name + "-stages.txt"
	_, err = dnsperf(ctx, o, o.queries, addr)
	tasks := serverTasks(srv.pid)
	trace, terr := o.stages.stop()
	if err != nil {
		return skip(err)
	}
	if terr != nil {
		return skip(terr)
	}
	if err := strayed(srv.pid); err != nil {
		return skip(err)
	}
	qs, byOrder, err := pairStages(bytes.NewReader(trace), tasks)
	if err != nil {
		return skip(err)
	}
	return summarize(t.name, qs, byOrder)
}

// measureRounds measures every target o.rounds times, each round starting one target later,
// so that every server meets the machine's varying load at each place in the order. After each
// run this program's garbage (a JetStream's, whose changes it stored) is collected and its
// memory returned, so that no run pays for the one before it. It returns each target's results
// in the order of ts.
func measureRounds(ctx context.Context, o options, dir string, ts []target, done func(result, int)) ([][]result, error) {
	out := make([][]result, len(ts))
	for round := range max(o.rounds, 1) {
		for k := range ts {
			i := (round + k) % len(ts)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			o.keepAs = fmt.Sprintf("%s-round-%d.txt", ts[i].name, round+1)
			r := measure(ctx, o, dir, ts[i])
			if ctx.Err() != nil {
				return nil, ctx.Err() // a measurement cut short is no result
			}
			debug.FreeOSMemory()
			out[i] = append(out[i], r)
			done(r, round)
		}
	}
	return out, nil
}

// changeTally adds up what the changes of the rounds of a target with changes beside it that
// answered counted and how long the flips went on in them (from the server's start until it is
// stopped), and the CPU time this program spent while their dnsperf ran (the JetStream and the
// changes) and how long that was. what names the count in the note.
type changeTally struct {
	what     string
	n        uint64
	rounds   int
	changing time.Duration
	own, ran time.Duration
}

// add counts the changes of the round that r ended, taken from c: only when the round answered,
// since a failed round ran for less than the duration, and c is taken even then, so that a round
// whose server never started (and so never set c) does not count the round before it again.
func (t *changeTally) add(r result, c *changeCounter) {
	n, changing := c.take()
	if r.skipped == "" && r.qps > 0 {
		t.n += n
		t.rounds++
		t.changing += changing
		t.own += r.ownCPU
		t.ran += r.ran
	}
}

// note is the tally as the saturation table's note: the rate of the changes over the time the
// flips went on (from each server's start until it is stopped), and the cores this program used
// over the time dnsperf ran (past the duration asked for when it waits for the answers to
// queries lost at its end). It shares the machine with the server and dnsperf, so what its
// JetStream and the changes take (with the little the listeners on the checked ports and its
// runtime take) is taken from them. Detour's own cost of a change is in its server CPU column.
func (t changeTally) note() string {
	if t.rounds == 0 {
		return ""
	}
	per := func(x float64, d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return x / d.Seconds()
	}
	return fmt.Sprintf("%d %s in %d rounds (%.0f/s); dnsbench itself (its JetStream, the changes, the checked ports) took %.2f cores", t.n, t.what, t.rounds, per(float64(t.n), t.changing), per(t.own.Seconds(), t.ran))
}

// selected reports whether the target name runs (-only).
func selected(o options, name string) bool {
	return len(o.only) == 0 || slices.Contains(o.only, name)
}

// freeAddr returns a loopback address whose port is free over UDP and TCP.
func freeAddr() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("find a free port: %w", err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr, nil
		}
	}
	return "", errors.New("find a free port: none free over UDP and TCP")
}

// waitAnswer polls addr until it answers the app name.
func waitAnswer(ctx context.Context, addr string, within time.Duration) error {
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		m := new(dns.Msg)
		m.SetQuestion("shop.demo.test.", dns.TypeA)
		r, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answered %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		time.Sleep(100 * time.Millisecond) // polling a server that is starting
	}
	return fmt.Errorf("no answer from %s within %s: %v", addr, within, last)
}

// listenBackends listens on 127.0.0.11 and 127.0.0.12 at one port, for ifportup to find up.
func listenBackends() ([]net.Listener, int, error) {
	for range 20 {
		a, err := net.Listen("tcp", "127.0.0.11:0")
		if err != nil {
			return nil, 0, fmt.Errorf("listen for health checks: %w", err)
		}
		port := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.12:%d", port))
		if err != nil {
			a.Close()
			continue
		}
		ls := []net.Listener{a, b}
		for _, l := range ls {
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		return ls, port, nil
	}
	return nil, 0, errors.New("listen for health checks: no port free on 127.0.0.11 and 127.0.0.12")
}

// mixName describes the query mix of o.
func mixName(o options) string {
	if o.mix == "app" {
		return "shop A only"
	}
	return "shop A (x2), www A, api A"
}

// failure says why a round counts for nothing (skipped, or no query answered), or "" when it
// answered.
func (r result) failure() string {
	if r.skipped == "" && r.qps > 0 {
		return ""
	}
	return cmp.Or(r.skipped, "no query answered")
}

// writeFailed lists the rounds that failed, with why: the medians are over the other rounds, so
// a report says which ones it leaves out.
func writeFailed(out io.Writer, rounds [][]result) {
	for _, rs := range rounds {
		for i, r := range rs {
			if why := r.failure(); why != "" {
				fmt.Fprintf(out, "failed: %s round %d: %s\n", r.name, i+1, why)
			}
		}
	}
}

// reportHealth prints the run of the health-aware answer alone: Detour against PowerDNS's Lua
// record with its packet cache as configured, the medians of the rounds and each round's ratio.
func reportHealth(out io.Writer, o options, rounds [][]result) {
	fmt.Fprintf(out, "health-aware answer only (shop A), at saturation: dnsperf -c %d -q %d, %s per server, %d rounds, PowerDNS cache-ttl %d s%s\n\n", o.clients, o.outstanding, o.duration, max(o.rounds, 1), o.pdnsCache, pinNote())
	rs := medians(rounds)
	writeTable(out, o, rs)
	writeFailed(out, rounds)
	fmt.Fprintln(out)
	get := map[string]result{}
	for _, r := range rs {
		get[r.name] = r
	}
	d, l := get["detour"], get["powerdns-lua"]
	if d.skipped != "" || l.skipped != "" || d.qps == 0 || l.qps == 0 || d.cpu == 0 {
		return
	}
	fmt.Fprintf(out, "detour / powerdns-lua, app name only: %.2f qps  (target >= 3.0), %.2f x less server CPU per query\n",
		d.qps/l.qps, cpuPerQuery(l, o)/cpuPerQuery(d, o))
	byName := roundsByName(rounds)
	fmt.Fprintf(out, "  per round: %s\n", perRound(byName["detour"], [][]result{byName["powerdns-lua"]}, qpsOf, false, 3.0))
	if !pinned {
		writeSharedCost(out, o, d.qps/l.qps, byName["detour"], byName["powerdns-lua"])
	}
}

// writeSharedCost breaks the qps ratio of d's rounds over l's into what each answer costs the
// machine, the server's CPU and dnsperf's, and the CPUs each run used: unpinned, the servers
// share their CPUs with dnsperf, and the qps ratio is the ratio of those costs times the ratio
// of the CPUs used. Where both runs fill the CPUs, the second factor is near 1 and dnsperf's cost
// is part of the ratio: a client that spends more on a query than a server holds the qps ratio
// below the servers' own CPU ratio. Each figure is the median over the rounds that answered.
func writeSharedCost(out io.Writer, o options, ratio float64, d, l []result) {
	type costs struct{ server, client, cpus float64 }
	get := func(rs []result) (costs, bool) {
		// The three medians are over the same rounds: one answered if any did.
		server, ok := roundsMedian(rs, func(r result) float64 { return cpuPerQuery(r, o) })
		client, _ := roundsMedian(rs, func(r result) float64 { return clientPerQuery(r, o) })
		cpus, _ := roundsMedian(rs, func(r result) float64 { return cpusUsed(r, o) })
		return costs{server, client, cpus}, ok && server > 0 && client > 0
	}
	dc, dok := get(d)
	lc, lok := get(l)
	if !dok || !lok {
		return
	}
	fmt.Fprintf(out, "  CPU per answer, server + dnsperf: detour %.2f + %.2f µs, powerdns-lua %.2f + %.2f µs; CPUs used, server + dnsperf: detour %.2f, powerdns-lua %.2f of %d\n",
		dc.server, dc.client, lc.server, lc.client, dc.cpus, lc.cpus, runtime.NumCPU())
	fmt.Fprintf(out, "  qps ratio %.2f ≈ cost ratio %.2f × CPUs-used ratio %.2f: where both runs fill the CPUs they share with dnsperf, the qps ratio is the cost ratio, dnsperf's share included\n",
		ratio, (lc.server+lc.client)/(dc.server+dc.client), dc.cpus/lc.cpus)
}

// reportLoad prints the latency run: every server at one load, each round and the median of
// the rounds, and Detour's median p99 against the lowest median p99 of the peers.
func reportLoad(out io.Writer, o options, rounds [][]result) {
	fmt.Fprintf(out, "at one load for every server: dnsperf -Q %.0f -c %d -q %d, %s per server, %d rounds (each starting one server later)%s\n", o.load, o.clients, o.outstanding, o.duration, max(o.rounds, 1), pinNote())
	fmt.Fprintf(out, "%s\n\n", idleNote("/"))
	meds := medians(rounds)
	writeTable(out, o, meds)
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tp50 ms per round\tp99 ms per round\thost steal % per round")
	for _, rs := range rounds {
		var p50s, p99s, steals []string
		for _, r := range rs {
			if r.failure() != "" {
				// A failed round is shown, not left out: the median is over the others.
				p50s, p99s, steals = append(p50s, "-"), append(p99s, "-"), append(steals, "-")
				continue
			}
			p50s = append(p50s, fmt.Sprintf("%.3f", ms(r.p50)))
			p99s = append(p99s, fmt.Sprintf("%.3f", ms(r.p99)))
			steals = append(steals, stealText(r.steal))
		}
		if len(rs) > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rs[0].name, strings.Join(p50s, " · "), strings.Join(p99s, " · "), strings.Join(steals, " · "))
		}
	}
	tw.Flush()
	writeFailed(out, rounds)
	// Detour and its variants against the lowest peer median.
	var ds []result
	var best result
	for _, m := range meds {
		switch {
		case m.skipped != "":
		case strings.HasPrefix(m.name, "detour"):
			ds = append(ds, m)
		case best.p99 == 0 || m.p99 < best.p99:
			best = m
		}
	}
	if best.p99 == 0 {
		return
	}
	fmt.Fprintln(out)
	byName := roundsByName(rounds)
	var peers [][]result
	for name, rs := range byName {
		if !strings.HasPrefix(name, "detour") {
			peers = append(peers, rs)
		}
	}
	for _, d := range ds {
		if d.p99 > 0 {
			fmt.Fprintf(out, "%s p99 / best peer's (%s), medians of the rounds: %.2f  (target <= 1.0)\n", d.name, best.name, float64(d.p99)/float64(best.p99))
			fmt.Fprintf(out, "  per round, against that round's best peer: %s\n", perRound(byName[d.name], peers, p99Of, true, 1.0))
		}
	}
	if w := stealWarning(rounds); w != "" {
		fmt.Fprintln(out, w)
	}
}

// stealLimit is the host steal, in per cent of the machine's CPU time, above which a latency
// round measures the hypervisor's scheduling as much as the server: a CPU woken for a datagram
// then waits for the host before it runs, and when the host holds the CPUs for more than 1 % of
// the time it can hold more than 1 % of the queries, which is the p99 itself.
const stealLimit = 1.0

// stealWarning says how many latency rounds ran while the host held this machine's CPUs for
// more than stealLimit of their time, or nothing when none did.
func stealWarning(rounds [][]result) string {
	n, over, most := 0, 0, 0.0
	for _, rs := range rounds {
		for _, r := range rs {
			if r.failure() != "" || r.steal < 0 {
				continue
			}
			n++
			if r.steal > stealLimit {
				over++
			}
			most = max(most, r.steal)
		}
	}
	if over == 0 {
		return ""
	}
	return fmt.Sprintf("caution: in %d of %d rounds the host held this machine's runnable CPUs for more than %.0f %% of their time (up to %.1f %%, steal in /proc/stat): the host can then hold more than 1 %% of the queries, so those p99s measure its scheduling as much as the servers", over, n, stealLimit, most)
}

// stealText prints a host steal share, or "-" where the kernel does not report it.
func stealText(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// medians sums up each target's rounds (median).
func medians(rounds [][]result) []result {
	ms := make([]result, 0, len(rounds))
	for _, rs := range rounds {
		ms = append(ms, median(rs))
	}
	return ms
}

// roundsMedian is the median of get over the rounds of rs that answered, and false when none did.
func roundsMedian(rs []result, get func(result) float64) (float64, bool) {
	var v []float64
	for _, r := range rs {
		if r.failure() == "" {
			v = append(v, get(r))
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// roundsByName indexes measureRounds' results by target name.
func roundsByName(rounds [][]result) map[string][]result {
	m := make(map[string][]result, len(rounds))
	for _, rs := range rounds {
		if len(rs) > 0 {
			m[rs[0].name] = rs
		}
	}
	return m
}

func qpsOf(r result) float64 { return r.qps }
func p99Of(r result) float64 { return float64(r.p99) }

// perRound compares a with the best of peers round by round, the rounds having run one after
// another on a machine whose load drifts: for each round in which a and at least one peer
// answered, a's figure over the best peer's in that round (the lowest when lower is better,
// else the highest), and how many of those ratios meet target (at most it when lower is
// better, else at least).
func perRound(a []result, peers [][]result, fig func(result) float64, lower bool, target float64) string {
	answered := func(r result) bool { return r.skipped == "" && r.qps > 0 && fig(r) > 0 }
	var ratios []string
	met := 0
	for i, r := range a {
		if !answered(r) {
			continue
		}
		best := 0.0
		for _, p := range peers {
			if i >= len(p) || !answered(p[i]) {
				continue
			}
			if v := fig(p[i]); best == 0 || (lower && v < best) || (!lower && v > best) {
				best = v
			}
		}
		if best == 0 {
			continue
		}
		ratio := fig(r) / best
		ratios = append(ratios, fmt.Sprintf("%.2f", ratio))
		if (lower && ratio <= target) || (!lower && ratio >= target) {
			met++
		}
	}
	if len(ratios) == 0 {
		return "no round to compare"
	}
	cmpSign := ">="
	if lower {
		cmpSign = "<="
	}
	return fmt.Sprintf("%s  (%d of %d rounds %s %.1f)", strings.Join(ratios, " · "), met, len(ratios), cmpSign, target)
}

// median is one target's rounds summed up: the median of each figure over the rounds that
// answered (each figure on its own), or the first skip when none did.
func median(rs []result) result {
	var ran []result
	for _, r := range rs {
		if r.failure() == "" {
			ran = append(ran, r)
		}
	}
	if len(ran) == 0 {
		r := rs[0]
		r.skipped = r.failure()
		return r
	}
	mid := func(get func(result) float64) float64 {
		v, _ := roundsMedian(ran, get)
		return v
	}
	m := result{name: ran[0].name}
	m.qps = mid(func(r result) float64 { return r.qps })
	m.lost = mid(func(r result) float64 { return r.lost })
	m.p50 = time.Duration(mid(func(r result) float64 { return float64(r.p50) }))
	m.p99 = time.Duration(mid(func(r result) float64 { return float64(r.p99) }))
	// CPU per query is CPU over queries: take the median of that, not of CPU and qps apart.
	perQuery := mid(func(r result) float64 { return float64(r.cpu) / r.qps })
	m.cpu = time.Duration(perQuery * m.qps)
	m.clientCPU = time.Duration(mid(func(r result) float64 { return float64(r.clientCPU) }))
	m.steal = mid(func(r result) float64 { return r.steal })
	return m
}

// writeTable prints one row per server: rate, loss and CPU, and in the latency run (o.load > 0)
// p50 and p99, or why the server was skipped. Saturation runs measure no latency.
func writeTable(out io.Writer, o options, rs []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	lat := o.load > 0
	if lat {
		fmt.Fprintln(tw, "server\tqps\tp50 ms\tp99 ms\tlost %\tserver cpu µs/query\tdnsperf cores\thost steal %")
	} else {
		fmt.Fprintln(tw, "server\tqps\tlost %\tserver cpu µs/query\tdnsperf cores\thost steal %")
	}
	for _, r := range rs {
		switch {
		case r.skipped != "" && lat:
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tskipped: %s\n", r.name, r.skipped)
		case r.skipped != "":
			fmt.Fprintf(tw, "%s\t-\t-\t-\tskipped: %s\n", r.name, r.skipped)
		case lat:
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\n", r.name, r.qps, latency(r.p50), latency(r.p99), r.lost, cpuPerQuery(r, o), clientShare(r, o), stealText(r.steal))
		default:
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\n", r.name, r.qps, r.lost, cpuPerQuery(r, o), clientShare(r, o), stealText(r.steal))
		}
	}
	tw.Flush()
}

// pinNote says where the servers and dnsperf ran, when -pin placed them.
func pinNote() string {
	if !pinned {
		return ""
	}
	return fmt.Sprintf(", servers on CPU %d, dnsperf on CPU %d", serverCPU, clientCPU)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// latency prints a latency in milliseconds, or "-" where none was measured.
func latency(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", ms(d))
}

// cpuPerQuery is the server's CPU time per answered query while dnsperf ran.
func cpuPerQuery(r result, o options) float64 {
	return float64(r.cpu.Microseconds()) / (r.qps * o.duration.Seconds())
}

// clientPerQuery is dnsperf's CPU time per query answered, in microseconds.
func clientPerQuery(r result, o options) float64 {
	return float64(r.clientCPU.Microseconds()) / (r.qps * o.duration.Seconds())
}

// cpusUsed is the server's and dnsperf's CPU time together over the run's length, in CPUs.
func cpusUsed(r result, o options) float64 {
	return (r.cpu + r.clientCPU).Seconds() / o.duration.Seconds()
}

// clientShare is dnsperf's CPU time over the run's length, in cores: near the cores it runs
// threads on, the load generator is the bottleneck.
func clientShare(r result, o options) float64 {
	return r.clientCPU.Seconds() / o.duration.Seconds()
}

func report(out io.Writer, o options, rs []result, rounds [][]result) {
	fmt.Fprintf(out, "at saturation: dnsperf -c %d -q %d, %s per server, %d rounds (medians), queries: %s%s\n\n", o.clients, o.outstanding, o.duration, max(o.rounds, 1), mixName(o), pinNote())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tqps\tlost %\tserver cpu µs/query\tdnsperf cores\thost steal %\tnote")
	get := map[string]result{}
	for _, r := range rs {
		get[r.name] = r
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tskipped: %s\n", r.name, r.skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t%s\n", r.name, r.qps, r.lost, cpuPerQuery(r, o), clientShare(r, o), stealText(r.steal), r.note)
	}
	tw.Flush()
	writeFailed(out, rounds)
	fmt.Fprintln(out)
	byName := roundsByName(rounds)
	d, ok := get["detour"]
	if !ok || d.skipped != "" {
		writeChanging(out, o, get, byName)
		return
	}
	best := result{}
	for _, n := range []string{"nsd", "knot", "powerdns"} {
		if r, ok := get[n]; ok && r.skipped == "" && r.qps > best.qps {
			best = r
		}
	}
	var static [][]result
	for _, n := range []string{"nsd", "knot", "powerdns"} {
		if rs, ok := byName[n]; ok {
			static = append(static, rs)
		}
	}
	if best.qps > 0 {
		fmt.Fprintf(out, "detour / best static peer (%s): %.2f  (target >= 1.0)\n", best.name, d.qps/best.qps)
		fmt.Fprintf(out, "  per round, against that round's best static peer: %s\n", perRound(byName["detour"], static, qpsOf, false, 1.0))
		if !o.variantsChange { // else each is read against detour-control (writeChanging)
			for _, v := range o.variants {
				if r, ok := get[v.name]; ok && r.skipped == "" {
					fmt.Fprintf(out, "%s / best static peer (%s): %.2f\n", v.name, best.name, r.qps/best.qps)
					fmt.Fprintf(out, "  per round, against that round's best static peer: %s\n", perRound(byName[v.name], static, qpsOf, false, 1.0))
				}
			}
		}
	}
	if r, ok := get["powerdns-lua"]; ok && r.skipped == "" && r.qps > 0 {
		if o.mix == "app" {
			fmt.Fprintf(out, "detour / powerdns-lua:            %.2f  (target >= 3.0)\n", d.qps/r.qps)
			fmt.Fprintf(out, "  per round: %s\n", perRound(byName["detour"], [][]result{byName["powerdns-lua"]}, qpsOf, false, 3.0))
			if !pinned {
				writeSharedCost(out, o, d.qps/r.qps, byName["detour"], byName["powerdns-lua"])
			}
		} else {
			fmt.Fprintf(out, "detour / powerdns-lua:            %.2f  (mixed queries; the target applies to the app name only, below)\n", d.qps/r.qps)
		}
	}
	writeChanging(out, o, get, byName)
}

// writeChanging compares the run whose answers change with the static run and with the control
// run, whose changes are published aside: the target is against the control, since dnsbench's
// own JetStream, storing the changes on the CPUs the server and dnsperf share, is no part of
// the server's cost. Variants that follow the changes (-variant-changes) are held to the same
// target, and compared with detour-changing, the run of this build, round by round.
func writeChanging(out io.Writer, o options, get map[string]result, byName map[string][]result) {
	names := []string{"detour-changing"}
	if o.variantsChange {
		for _, v := range o.variants {
			names = append(names, v.name)
		}
	}
	c, controlled := get["detour-control"]
	controlled = controlled && c.skipped == ""
	ch, changed := get["detour-changing"]
	changed = changed && ch.skipped == ""
	if d, ok := get["detour"]; ok && d.skipped == "" && changed {
		fmt.Fprintf(out, "detour-changing / detour:         %.2f  (dnsbench's JetStream storing the changes takes its share of the CPUs too)\n", ch.qps/d.qps)
	}
	for _, name := range names {
		r, ok := get[name]
		if !ok || r.skipped != "" {
			continue
		}
		if !controlled {
			fmt.Fprintf(out, "%s / detour-control: not measured, detour-control did not run: the target (>= 0.9) is not evaluated\n", name)
		} else {
			note := "(target >= 0.9: both publish the same changes, only detour-changing's server follows them)"
			if name != "detour-changing" {
				note = "(target >= 0.9: a variant following the changes detour-changing follows)"
			}
			pad := strings.Repeat(" ", max(0, len("detour-changing")-len(name)))
			fmt.Fprintf(out, "%s / detour-control: %s%.2f  %s\n", name, pad, r.qps/c.qps, note)
			fmt.Fprintf(out, "  per round: %s\n", perRound(byName[name], [][]result{byName["detour-control"]}, qpsOf, false, 0.9))
		}
		if name != "detour-changing" && changed {
			fmt.Fprintf(out, "%s / detour-changing: %.2f  (this build's server following the same changes)\n", name, r.qps/ch.qps)
			fmt.Fprintf(out, "  per round: %s\n", perRound(byName[name], [][]result{byName["detour-changing"]}, qpsOf, false, 1.0))
		}
	}
}
