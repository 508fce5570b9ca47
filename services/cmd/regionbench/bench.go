package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/prober/benchenv"
	"github.com/nats-io/nats.go/jetstream"
)

// bench runs the regions, in the network namespace where says (its own: isolate).
func bench(s settings, where benchenv.Netns) error {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return fmt.Errorf("dnsperf (Debian package dnsperf) is not installed: run deployments/install-packages.sh deployments/packages/bench.txt")
	}
	if _, err := benchenv.RaiseFileLimit(1 << 20); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "regionbench-")
	if err != nil {
		return err
	}
	if !s.keep {
		defer os.RemoveAll(dir)
		benchenv.RemoveOnSignal(dir)
	}
	if s.detour == "" {
		s.detour = filepath.Join(dir, "detour")
		build := exec.Command("go", "build", "-o", s.detour, "github.com/detourdev/detour/services/cmd/detour")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build detour: %w", err)
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("regionbench: in %s; check tcp every %s, timeout %s, jitter %s, fall 3, rise 2; %d probers; %d apps per edge; dnsperf offers %d qps; load %s",
		where, s.interval, s.interval/2, s.checkJitter(), s.probers, s.appsPerEdge, s.dnsLoad, load)
	if s.keep {
		fmt.Printf("working directory (kept): %s\n", dir)
	}
	for _, n := range s.sizes {
		st := &stack{s: s, n: n, dir: filepath.Join(dir, fmt.Sprintf("n%d", n)), detour: s.detour}
		err := st.region()
		st.down()
		if err != nil {
			return fmt.Errorf("N=%d: %w (logs in %s)", n, err, st.dir)
		}
	}
	return nil
}

// region runs one region of st.n endpoints: up, killed, restored.
func (st *stack) region() error {
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return err
	}
	notify, err := st.startSecondary()
	if err != nil {
		return err
	}
	st.cfgPath = filepath.Join(st.dir, "region.yaml")
	if err := os.WriteFile(st.cfgPath, regionConfig(st.n, st.s.appsPerEdge, st.s.interval, st.s.jitter, notify), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(st.cfgPath)
	if err != nil {
		return err
	}
	st.checks = map[string]config.Check{}
	for _, t := range prober.Targets(cfg) {
		st.checks[t.Key()] = t.Check
	}
	t0 := time.Now()
	if err := st.up(); err != nil {
		return err
	}
	ctx := context.Background()
	// Every endpoint and pool recorded up (unknown ones are answered too, so answers say
	// nothing yet), then no stream growing for two seconds.
	deadline := time.Now().Add(3 * time.Minute)
	for st.lastSeq(ctx, events.StreamState) < uint64(4*st.n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("STATE holds %d transitions after 3 minutes, want %d (endpoints and pools of both regions up)", st.lastSeq(ctx, events.StreamState), 4*st.n)
		}
		if err := st.exited(); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond) // waiting for a start-up, with a deadline
	}
	if err := st.settle(ctx); err != nil {
		return err
	}
	fmt.Printf("\nN=%d: %d processes up, every endpoint recorded up in %s\n", st.n, len(st.procs), time.Since(t0).Round(time.Second))

	// The static rate is measured under the same load as the storms': dnsperf, past its first
	// second, and the polling client, whose answers never come here.
	static, err := st.dnsperf(5*time.Second, st.s.dnsLoad)
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // dnsperf's first second is its ramp
	from := time.Now()
	st.measureFrom()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = watch(wctx, st.n, func(int) netip.Addr { return netip.Addr{} })
	cancel()
	if err != nil {
		return err
	}
	st.measured()
	st.printSteady(time.Since(from))
	staticQPS, err := static.wait(from, time.Now())
	if err != nil {
		return err
	}
	home := func(i int) netip.Addr { return addr(1, i) }
	backup := func(i int) netip.Addr { return addr(2, i) }
	// Each storm's table is printed as soon as it is measured: a recovery that fails (on an
	// overloaded machine) leaves the failure's.
	fail, err := st.storm(ctx, "failure", 3, backup, st.kill, staticQPS)
	if err != nil {
		return err
	}
	st.print(fail)
	if err := st.settle(ctx); err != nil {
		return err
	}
	// The region's new listeners listen while the firewall still refuses them.
	if st.doomed, err = st.startListeners(1, "listeners-doomed"); err != nil {
		return err
	}
	back, err := st.storm(ctx, "recovery", 2, home, st.restore, staticQPS)
	if err != nil {
		return err
	}
	st.print(back)
	return nil
}

// settle waits until no stream has grown for two seconds.
func (st *stack) settle(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for prev := ""; ; time.Sleep(2 * time.Second) {
		now := fmt.Sprint(st.lastSeq(ctx, events.StreamState), st.lastSeq(ctx, events.StreamDNS), st.lastSeq(ctx, events.StreamRoutes))
		if now == prev {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the streams still grow 2 minutes after the last change")
		}
		prev = now
	}
}

// phase is what one storm measured.
type phase struct {
	name   string
	rounds int
	// at is time zero: when the firewall was told to refuse the region (or to admit it again);
	// committed is how long after it nft acknowledged the change, which took effect in between.
	at        time.Time
	committed time.Duration
	// seen is when a polling client first got each app's new answer; served when the DNS
	// server recorded the zone version holding it; stored and applied when ROUTES stored, and
	// the edge applied, the app's first route with its new availability.
	seen, served, stored, applied []time.Time
	// state is when STATE stored each endpoint transition; checked when the check that
	// completed its threshold completed (its result's own time, the prober's clock); probed
	// when PROBES stored that result; timed the transition's own time, the decider's dating of
	// that result (PROBES's stamp; for a result it heard on the wire because PROBES was late,
	// its reckoning of stream time, which trails by how far behind PROBES it is).
	state, checked, probed, timed []time.Time
	// reaped is how long after time zero the SIGKILLed listeners' process was reaped (the
	// failure only).
	reaped time.Duration
	// instant, startLag and took are, per endpoint transition, the instant its threshold check
	// was scheduled for, how long after it the check started, and how long it ran.
	instant        []time.Time
	startLag, took []time.Duration
	lagged         []lagged
	// load is the one-minute load average at the storm's end.
	load                      string
	transitions, zoneVersions int
	notifies                  int64
	dnsQPS, staticQPS         float64
	procs                     []proc
	// prof is the phase's CPU profile of each process (with -profile).
	prof *profiler
	// traffic is what NATS carried meanwhile, or why it could not be read.
	traffic    traffic
	trafficErr error
}

// storm measures one change of the whole region: act (the kill or the restore), which sets the
// phase's time zero, then until every answer is want(i).
func (st *stack) storm(ctx context.Context, name string, rounds int, want func(int) netip.Addr, act func(*phase) error, staticQPS float64) (*phase, error) {
	ph := &phase{name: name, rounds: rounds, staticQPS: staticQPS}
	stateFrom, dnsFrom, routesFrom := st.lastSeq(ctx, events.StreamState), st.lastSeq(ctx, events.StreamDNS), st.lastSeq(ctx, events.StreamRoutes)
	sent := st.notifies.Load()
	bound := time.Duration(rounds) * st.s.interval
	load, err := st.dnsperf(bound+5*time.Second, st.s.dnsLoad)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // dnsperf's first second is its ramp, not the storm's
	st.measureFrom()
	t0, terr := st.natsTraffic(ctx)
	if st.s.profile {
		if ph.prof, err = st.profile(name); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, bound+2*time.Minute)
	defer cancel()
	watched := make(chan []time.Time, 1)
	werr := make(chan error, 1)
	go func() {
		t, err := watch(wctx, st.n, want)
		watched <- t
		werr <- err
	}()
	if err := act(ph); err != nil {
		return nil, err
	}
	ph.seen = <-watched
	if err := <-werr; err != nil {
		return nil, err
	}
	st.measured()
	if t1, err := st.natsTraffic(ctx); terr != nil || err != nil {
		ph.trafficErr = cmp.Or(terr, err)
	} else {
		ph.traffic = t1.since(t0)
	}
	if ph.prof != nil {
		ph.prof.stop()
	}
	if err := st.settle(ctx); err != nil {
		return nil, err
	}
	for i, t := range ph.seen {
		if t.IsZero() {
			return nil, fmt.Errorf("%s: app%d's answer never became %s", name, i, want(i))
		}
	}
	last := slices.MaxFunc(ph.seen, time.Time.Compare)
	var causes []string // per endpoint transition, the id of the result that completed it
	if err := st.read(ctx, events.StreamState, events.SubjectState, stateFrom, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		if strings.HasPrefix(m.Subject(), "detour.state.endpoint.") {
			ph.state = append(ph.state, md.Timestamp)
			var timed time.Time // a transition that does not decode counts as none
			cause := ""
			if env, err := events.Decode(m.Data()); err == nil {
				timed, cause = env.Time, env.Cause
			}
			ph.timed = append(ph.timed, timed)
			causes = append(causes, cause)
		}
		ph.transitions++
	}); err != nil {
		return nil, err
	}
	msgs := map[string]bool{}
	for _, c := range causes {
		msg, _, _ := strings.Cut(c, "/") // a batch's id and the result's index in it, or the message's own id
		msgs[msg] = true
	}
	stored, results, err := st.probesStored(ctx, ph.at, msgs)
	if err != nil {
		return nil, err
	}
	for _, c := range causes {
		msg, _, _ := strings.Cut(c, "/")
		ph.probed = append(ph.probed, stored[msg])
		r, ok := results[c]
		var at, instant time.Time
		var lag, took time.Duration = -1, -1
		if ok {
			at = r.At
			took = time.Duration(r.LatencyMicros) * time.Microsecond
			if instant, ok = st.instant(r, at.Add(-took)); ok {
				lag = at.Add(-took).Sub(instant)
			}
		}
		ph.checked = append(ph.checked, at)
		ph.instant = append(ph.instant, instant)
		ph.startLag, ph.took = append(ph.startLag, lag), append(ph.took, took)
	}
	// Every check that started in the storm, until the last threshold check completed.
	until := later(ph.at, slices.MaxFunc(append([]time.Time{ph.at}, ph.checked...), time.Time.Compare))
	for _, r := range results {
		start := r.At.Add(-time.Duration(r.LatencyMicros) * time.Microsecond)
		if start.Before(ph.at) || start.After(until) {
			continue
		}
		if instant, ok := st.instant(r, start); ok {
			ph.lagged = append(ph.lagged, lagged{instant: instant, lag: start.Sub(instant)})
		}
	}
	ph.served = make([]time.Time, st.n)
	if err := st.read(ctx, events.StreamDNS, ">", dnsFrom, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		env, err := events.Decode(m.Data())
		var z events.ZoneChanged
		if err != nil || env.Type != events.TypeZoneChanged || env.Payload(&z) != nil {
			return
		}
		if z.Part <= 1 { // a version's later parts are the same version
			ph.zoneVersions++
		}
		for _, c := range z.Changes {
			var i int
			if _, err := fmt.Sscanf(c.Name, "app%d.region.test.", &i); err == nil && i < st.n && c.Type == "A" &&
				slices.Contains(c.After, want(i).String()) && ph.served[i].IsZero() {
				ph.served[i] = env.Time
			}
		}
	}); err != nil {
		return nil, err
	}
	if err := st.routeTimes(ctx, ph, routesFrom, want(0) == addr(2, 0)); err != nil {
		return nil, err
	}
	// The storm: from the first transition until the last answer moved.
	from := ph.at
	if len(ph.state) > 0 {
		from = slices.MinFunc(ph.state, time.Time.Compare)
	}
	if ph.dnsQPS, err = load.wait(from, later(last, from.Add(500*time.Millisecond))); err != nil {
		return nil, err
	}
	ph.notifies = st.notifies.Load() - sent
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		ph.load, _, _ = strings.Cut(string(b), " ")
	}
	for _, p := range st.procs {
		ph.procs = append(ph.procs, *p)
	}
	if ps := load.p.cmd.ProcessState; ps != nil {
		lp := *load.p
		lp.cpu = ps.UserTime() + ps.SystemTime()
		lp.wait = -1 // its threads are gone: not known
		lp.rss = peakRSS(ps)
		ph.procs = append(ph.procs, lp)
	}
	return ph, nil
}

// routeTimes reads ROUTES after from and the edges' logs: per app, when its first route with
// Available == !down was stored, and when its edge applied that route.
func (st *stack) routeTimes(ctx context.Context, ph *phase, from uint64, down bool) error {
	ph.stored, ph.applied = make([]time.Time, st.n), make([]time.Time, st.n)
	seqs := make([]uint64, st.n)
	err := st.read(ctx, events.StreamRoutes, ">", from, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		var r events.EdgeRoute
		if env, err := events.Decode(m.Data()); err != nil || env.Payload(&r) != nil {
			return
		}
		var i int
		if _, err := fmt.Sscanf(r.Route.App, "app%d", &i); err != nil || i >= st.n || !ph.stored[i].IsZero() || r.Route.Available == down {
			return
		}
		ph.stored[i], seqs[i] = md.Timestamp, r.StateSeq
	})
	if err != nil {
		return err
	}
	// The edges apply the routes after ROUTES stored them: read their logs until each route is
	// there, for 30 s at most.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		applied, err := st.appliedRoutes()
		if err != nil {
			return err
		}
		missing := 0
		for i := range st.n {
			ph.applied[i] = applied[route{fmt.Sprintf("app%d", i), seqs[i]}]
			if !ph.stored[i].IsZero() && ph.applied[i].IsZero() {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return nil
		}
	}
}

// probesStored reads the PROBES messages stored since from: when each message whose id (a
// batch's id, or a single result's) is in want was stored, by message id, and every result, by
// result id.
func (st *stack) probesStored(ctx context.Context, from time.Time, want map[string]bool) (stored map[string]time.Time, results map[string]events.ProbeResult, err error) {
	stored, results = map[string]time.Time{}, map[string]events.ProbeResult{}
	last := st.lastSeq(ctx, events.StreamProbes)
	cons, err := st.js.OrderedConsumer(ctx, events.StreamProbes, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", events.StreamProbes, err)
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", events.StreamProbes, err)
		}
		got := 0
		var seq uint64
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", events.StreamProbes, err)
			}
			seq = md.Sequence.Stream
			got++
			if id := m.Headers().Get(jetstream.MsgIDHeader); want[id] {
				stored[id] = md.Timestamp
			}
			rs, err := events.DecodeProbes(m.Data())
			if err != nil {
				continue // counted as unknown: its transitions show no check time
			}
			for _, r := range rs {
				results[r.ID] = r
			}
		}
		if err := batch.Error(); err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", events.StreamProbes, err)
		}
		if got == 0 || seq >= last {
			return stored, results, nil
		}
	}
}

// lagged is one check's scheduled instant and how long after it the check started.
type lagged struct {
	instant time.Time
	lag     time.Duration
}

// instant is the scheduled instant of the check a result comes from, computed as every prober
// computes it: the latest instant of its key at or before the check's start. ok is false for
// a check the configuration does not hold.
func (st *stack) instant(r events.ProbeResult, start time.Time) (time.Time, bool) {
	key := r.App + "/" + r.Pool + "/" + r.Endpoint
	k, ok := st.checks[key]
	if !ok {
		return time.Time{}, false
	}
	interval, jitter := k.Interval.D(), k.Jitter.D()
	n := prober.Window(start, interval)
	at := prober.SlotTime(key, interval, jitter, n)
	if at.After(start) {
		at = prober.SlotTime(key, interval, jitter, n-1)
	}
	return at, true
}

// lagsBy describes the start lags of the checks whose instants fall in each step-long span
// after t0: the p99 and the largest, and how many.
func lagsBy(t0 time.Time, step time.Duration, ls []lagged) string {
	spans := map[int][]time.Duration{}
	last := 0
	for _, l := range ls {
		k := int(l.instant.Sub(t0) / step)
		if l.instant.Before(t0) {
			k = -1
		}
		spans[k] = append(spans[k], l.lag)
		last = max(last, k)
	}
	var b strings.Builder
	for k := -1; k <= last; k++ {
		d := spans[k]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
		fmt.Fprintf(&b, "    instants %3s–%3s: p99 %-8s max %-8s (%d)\n", (time.Duration(k) * step).String(), (time.Duration(k+1) * step).String(),
			r(d[min(len(d)-1, len(d)*99/100)]), r(d[len(d)-1]), len(d))
	}
	return b.String()
}

// route names one route an edge applied: its app and the STATE sequence it was computed at.
type route struct {
	app string
	seq uint64
}

// appliedRoutes reads the edges' logs: when each route was first applied.
func (st *stack) appliedRoutes() (map[route]time.Time, error) {
	applied := map[route]time.Time{}
	for e := range st.edges() {
		f, err := os.Open(filepath.Join(st.dir, fmt.Sprintf("edge-%d.log", e)))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Message  string    `json:"message"`
				App      string    `json:"app"`
				StateSeq uint64    `json:"state_seq"`
				Time     time.Time `json:"time"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "route applied" {
				if _, ok := applied[route{l.App, l.StateSeq}]; !ok {
					applied[route{l.App, l.StateSeq}] = l.Time
				}
			}
		}
		f.Close()
	}
	return applied, nil
}

// spread describes times as offsets from t0: first, median, p99 and last, and how many.
func spread(t0 time.Time, ts []time.Time) string {
	var d []time.Duration
	for _, t := range ts {
		if !t.IsZero() {
			d = append(d, t.Sub(t0))
		}
	}
	return spreadOf(d)
}

// lags are the times from each from[i] to to[i], where both are known.
func lags(from, to []time.Time) []time.Duration {
	var d []time.Duration
	for i := range min(len(from), len(to)) {
		if !from[i].IsZero() && !to[i].IsZero() {
			d = append(d, to[i].Sub(from[i]))
		}
	}
	return d
}

// known drops the durations marked unknown (negative).
func known(d []time.Duration) []time.Duration {
	return slices.DeleteFunc(slices.Clone(d), func(x time.Duration) bool { return x < 0 })
}

// lagsOf are the start lags of ls.
func lagsOf(ls []lagged) []time.Duration {
	d := make([]time.Duration, len(ls))
	for i, l := range ls {
		d[i] = l.lag
	}
	return d
}

// spreadOf describes durations: smallest, median, p99 and largest, and how many.
func spreadOf(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
	return fmt.Sprintf("%-8s %-8s %-8s %-8s (%d)", r(d[0]), r(d[len(d)/2]), r(d[min(len(d)-1, len(d)*99/100)]), r(d[len(d)-1]), len(d))
}

// printSteady prints what each role used over d with every endpoint up and checked: CPU per
// second, and the probers' CPU per check (each of the 2N endpoints and N edge listeners is
// checked once per interval).
func (st *stack) printSteady(d time.Duration) {
	per := map[string]time.Duration{}
	var roles []string
	for _, p := range st.procs {
		if _, ok := per[p.role]; !ok {
			roles = append(roles, p.role)
		}
		per[p.role] += p.cpu
	}
	fmt.Printf("steady state over %s (nothing failing): CPU per second", d.Round(100*time.Millisecond))
	for _, r := range roles {
		fmt.Printf(" %s %.2f", r, per[r].Seconds()/d.Seconds())
	}
	checks := float64(3*st.n) * d.Seconds() / st.s.interval.Seconds()
	fmt.Printf("; probers %.1f µs CPU per check (%d endpoints, %d edge listeners)\n",
		float64(per["prober"].Microseconds())/checks, 2*st.n, st.n)
}

func (st *stack) print(phases ...*phase) {
	for _, ph := range phases {
		bound := time.Duration(ph.rounds)*st.s.interval + 100*time.Millisecond
		fmt.Printf("\nN=%d %s (bound interval × %d + 100ms = %s; the schedule alone, interval × %d + jitter: %s), times after time zero, the firewall told to %s the region:\n",
			st.n, ph.name, ph.rounds, bound, ph.rounds, time.Duration(ph.rounds)*st.s.interval+st.s.checkJitter(),
			map[string]string{"failure": "refuse", "recovery": "admit"}[ph.name])
		fmt.Printf("  %-44s %-8s %-8s %-8s %-8s\n", "", "first", "median", "p99", "last")
		fmt.Printf("  %-44s %s\n", "DNS answer served (zone version recorded)", spread(ph.at, ph.served))
		fmt.Printf("  %-44s %s\n", "DNS answer seen by a polling client", spread(ph.at, ph.seen))
		fmt.Printf("  %-44s %s\n", "edge route stored (ROUTES)", spread(ph.at, ph.stored))
		fmt.Printf("  %-44s %s\n", "edge route applied by the edge", spread(ph.at, ph.applied))
		fmt.Printf("  %-44s %s\n", "endpoint transition appended (STATE)", spread(ph.at, ph.state))
		fmt.Printf("  %-44s %s\n", "threshold check completed (its result's time)", spread(ph.at, ph.checked))
		fmt.Printf("  %-44s %s\n", "  its scheduled instant", spread(ph.at, ph.instant))
		fmt.Printf("  %-44s %s\n", "  its start after its instant", spreadOf(known(ph.startLag)))
		fmt.Printf("  %-44s %s\n", "  its run (connect to result)", spreadOf(known(ph.took)))
		fmt.Printf("  %-44s %s\n", "check completed → transition appended, each", spreadOf(lags(ph.checked, ph.state)))
		fmt.Printf("  %-44s %s\n", "  check completed → result stored in PROBES", spreadOf(lags(ph.checked, ph.probed)))
		fmt.Printf("  %-44s %s\n", "  result stored → transition appended", spreadOf(lags(ph.probed, ph.state)))
		fmt.Printf("  %-44s %s\n", "  transition's own time → appended", spreadOf(lags(ph.timed, ph.state)))
		fmt.Printf("  firewall's change acknowledged %s after time zero", ph.committed.Round(10*time.Microsecond))
		if ph.name == "failure" {
			fmt.Printf("; the listeners' process, SIGKILLed then, reaped %s after time zero", ph.reaped.Round(time.Millisecond))
		}
		fmt.Printf("\n  start after its instant of every check started in the storm: %s\n%s",
			spreadOf(lagsOf(ph.lagged)), lagsBy(ph.at, 5*time.Second, ph.lagged))
		rate := 0.0
		if len(ph.state) > 1 {
			first, last := slices.MinFunc(ph.state, time.Time.Compare), slices.MaxFunc(ph.state, time.Time.Compare)
			rate = float64(ph.transitions) / max(last.Sub(first), time.Millisecond).Seconds()
		}
		fmt.Printf("  DNS during the storm %.0f qps = %.2f × static %.0f qps (dnsperf -Q %d); %d endpoint and pool transitions at %.0f/s; %d zone versions; %d NOTIFYs\n",
			ph.dnsQPS, ph.dnsQPS/ph.staticQPS, ph.staticQPS, st.s.dnsLoad, ph.transitions, rate, ph.zoneVersions, ph.notifies)
		if ph.trafficErr != nil {
			fmt.Printf("  NATS in the storm: not counted (%v)\n", ph.trafficErr)
		} else {
			fmt.Print(ph.traffic)
		}
		type usage struct {
			n         int
			cpu, wait time.Duration
			rss       int64
		}
		var roles []string
		per := map[string]*usage{}
		for _, p := range ph.procs {
			u := per[p.role]
			if u == nil {
				u = &usage{}
				per[p.role] = u
				roles = append(roles, p.role)
			}
			u.n++
			u.cpu += p.cpu
			if p.wait < 0 || u.wait < 0 {
				u.wait = -1
			} else {
				u.wait += p.wait
			}
			u.rss = max(u.rss, p.rss)
		}
		// The storm: from time zero until the last answer moved.
		storm := slices.MaxFunc(append([]time.Time{ph.at}, ph.seen...), time.Time.Compare).Sub(ph.at)
		fmt.Printf("  %-22s %9s %14s %16s  (waiting for a CPU, summed over a role's threads; storm %s, load average %s at its end)\n",
			"role (processes)", "CPU", "peak RSS/proc", "run-queue wait", storm.Round(100*time.Millisecond), ph.load)
		for _, r := range roles {
			u := per[r]
			wait := "unknown"
			if u.wait >= 0 {
				wait = u.wait.Round(10 * time.Millisecond).String()
			}
			fmt.Printf("  %-22s %9s %10d MiB %16s\n", fmt.Sprintf("%s (%d)", r, u.n), u.cpu.Round(10*time.Millisecond), u.rss>>20, wait)
		}
		if ph.prof != nil {
			// The two profiled processes that used the most CPU, and where it went.
			procs := slices.DeleteFunc(slices.Clone(ph.procs), func(p proc) bool { return ph.prof.files[p.name] == "" })
			slices.SortFunc(procs, func(a, b proc) int { return int(b.cpu - a.cpu) })
			for _, p := range procs[:min(2, len(procs))] {
				fmt.Printf("  CPU profile of %s (%s), self time, top functions:\n%s", p.name, p.cpu.Round(10*time.Millisecond), ph.prof.top(p.name, 12))
			}
		}
	}
}

// regionConfig is a region of n failover apps: app i answers its own endpoint in the dying
// region (127.1.x.y:80) while it is up, and its own backup endpoint (127.2.x.y:80) once it is
// down. One edge per appsPerEdge apps fronts their first pools. A jitter of 0 leaves the
// check's default, none.
func regionConfig(n, appsPerEdge int, interval, jitter time.Duration, notify string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "zones: [{name: region.test, notify: [%q]}]\napps:\n", notify)
	j := ""
	if jitter > 0 {
		j = fmt.Sprintf(", jitter: %s", jitter)
	}
	for i := range n {
		fmt.Fprintf(&b, `  - name: app%d
    fqdn: app%d.region.test
    check: {type: tcp, interval: %s, timeout: %s%s, fall: 3, rise: 2}
    pools:
      - {name: main, region: doomed, endpoints: [{name: e, address: "%s:80"}]}
      - {name: backup, region: safe, endpoints: [{name: e, address: "%s:80"}]}
`, i, i, interval, interval/2, j, addr(1, i), addr(2, i))
	}
	b.WriteString("edges:\n")
	for i := range n {
		if i%appsPerEdge == 0 {
			e := i / appsPerEdge
			fmt.Fprintf(&b, "  - name: edge-%d\n    region: safe\n    hostname: edge-%d.region.test\n    address: 127.4.0.%d\n    apps:\n", e, e, 1+e)
		}
		fmt.Fprintf(&b, "      - {app: app%d, pool: main, listen: \"%s:8080\"}\n", i, addr(3, i))
	}
	return []byte(b.String())
}
