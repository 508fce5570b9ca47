package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/prober/benchenv"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// result is one contender's measurement.
type result struct {
	name string
	sum  summary
	cpu  time.Duration
	// user is the part of cpu spent in user space, the rest in the kernel.
	user time.Duration
	wall time.Duration
	rss  int64
	// harness is the CPU the benchmark process itself used meanwhile.
	harness time.Duration
}

// cpuPerCheck is the CPU used per successful check: a contender that fails its checks has not
// done the work.
func (r result) cpuPerCheck() time.Duration {
	if r.sum.ok == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.sum.ok)
}

// bench measures the contenders in the network namespace where says.
func bench(s settings, where benchenv.Netns) error {
	limit, err := benchenv.RaiseFileLimit(1 << 20)
	if err != nil {
		return err
	}
	if need := uint64(s.tcp+s.http) + 4096; limit < need {
		return fmt.Errorf("file limit %d is below the %d this run needs", limit, need)
	}
	dir, err := os.MkdirTemp("", "probebench-")
	if err != nil {
		return fmt.Errorf("make work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	benchenv.RemoveOnSignal(dir)

	eps, err := listen(s.tcp, s.http)
	if err != nil {
		return err
	}
	defer eps.Close()
	peer := !s.skipPeer
	if _, err := exec.LookPath(s.blackbox); peer && err != nil {
		fmt.Printf("blackbox_exporter: skipped: %s not found (install it: deployments/install-packages.sh deployments/packages/bench.txt)\n", s.blackbox)
		peer = false
	}
	fmt.Printf("probebench: in %s; interval %s, %s measured after %s warm-up per run, on time = started within %s of its instant and succeeded; load average %s\n",
		where, s.interval, s.duration, s.warmup, s.onTime, loadavg())

	full, err := compare(s, dir, "full", eps.tcp, eps.http, peer)
	if err != nil {
		return err
	}
	if peer && s.compareScale > 0 && s.compareScale < 1 {
		nt, nh := int(float64(len(eps.tcp))*s.compareScale), int(float64(len(eps.http))*s.compareScale)
		small, err := compare(s, dir, "sustainable", eps.tcp[:nt], eps.http[:nh], peer)
		if err != nil {
			return err
		}
		ratio("at a rate both sustain", small)
	}
	if peer {
		ratio("at the full rate", full)
	}
	fmt.Printf("probebench: done; load average %s\n", loadavg())
	return nil
}

// compare runs Detour, then blackbox_exporter when peer is set, against the given endpoints.
func compare(s settings, dir, label string, tcp, web []netip.AddrPort, peer bool) ([2]result, error) {
	var out [2]result
	cfgFile := filepath.Join(dir, label+".yaml")
	cfg, err := writeConfig(cfgFile, tcp, web, s.interval)
	if err != nil {
		return out, err
	}
	targets := prober.Targets(cfg)
	keys := make([]string, len(targets))
	for i, t := range targets {
		keys[i] = t.Key()
	}
	jitter := cfg.Apps[0].Check.Jitter.D()
	rate := float64(len(targets)) / s.interval.Seconds()
	fmt.Printf("\n== %s: %d tcp + %d http endpoints = %.0f checks/s (jitter %s)\n", label, len(tcp), len(web), rate, jitter)
	if out[0], err = runDetour(s, dir, cfgFile, keys, jitter); err != nil {
		return out, err
	}
	report(out[0])
	if !peer {
		return out, nil
	}
	if out[1], err = runBlackbox(s, dir, targets, keys, jitter); err != nil {
		return out, err
	}
	report(out[1])
	return out, nil
}

func ratio(label string, r [2]result) {
	d, b := r[0].cpuPerCheck(), r[1].cpuPerCheck()
	if due := r[1].sum.expected; due > 0 && r[1].sum.ok*2 < due {
		fmt.Printf("CPU per successful check %s: blackbox_exporter did not sustain the rate (%d of %d checks answered successfully within the interval, using %.2f cores); detour %s\n",
			label, r[1].sum.ok, due, r[1].cpu.Seconds()/r[1].wall.Seconds(), d)
		return
	}
	if d == 0 || b == 0 {
		fmt.Printf("CPU per successful check %s: not comparable (detour %s, blackbox_exporter %s)\n", label, d, b)
		return
	}
	fmt.Printf("CPU per successful check %s: detour %s, blackbox_exporter %s: detour/blackbox = %.2f (blackbox uses %.1f× the CPU per check)\n",
		label, d, b, float64(d)/float64(b), float64(b)/float64(d))
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func report(r result) {
	s := r.sum
	fmt.Printf("%-18s checks due %d, ran %d (ok %d, duplicates %d), on time %.3f%%, start lateness p50 %s p99 %s max %s; CPU %.2fs over %.1fs = %.2f cores, %s per successful check; peak RSS %d MiB\n",
		r.name, s.expected, s.ran, s.ok, s.duplicate, 100*s.share(), s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond),
		s.worst.Round(time.Microsecond), r.cpu.Seconds(), r.wall.Seconds(), r.cpu.Seconds()/r.wall.Seconds(), r.cpuPerCheck(), r.rss>>20)
	if s.ok > 0 {
		fmt.Printf("%-18s of that, per successful check: %s in user space, %s in the kernel\n", "",
			r.user/time.Duration(s.ok), (r.cpu-r.user)/time.Duration(s.ok))
	}
	if len(s.failures) > 0 {
		fmt.Printf("%-18s failures by class: %v\n", "", s.failures)
		if s.firstErr != nil {
			fmt.Printf("%-18s first error: %v\n", "", s.firstErr)
		}
	}
	if r.harness > 0 {
		fmt.Printf("%-18s (the benchmark's own process used %.2f cores meanwhile: listeners, JetStream, driver)\n", "", r.harness.Seconds()/r.wall.Seconds())
	}
}

// writeConfig writes a Detour configuration with one tcp app and one http app.
func writeConfig(path string, tcp, web []netip.AddrPort, interval time.Duration) (*config.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "zones: [{name: bench.test}]\napps:\n")
	app := func(name, check string, addrs []netip.AddrPort) {
		if len(addrs) == 0 {
			return
		}
		fmt.Fprintf(&b, "  - name: %s\n    fqdn: %s.bench.test\n    check: {%s, interval: %s, timeout: 500ms}\n    pools:\n      - name: p\n        endpoints:\n", name, name, check, interval)
		for _, a := range addrs {
			fmt.Fprintf(&b, "          - address: %q\n", a.String())
		}
	}
	app("tcp", "type: tcp", tcp)
	app("http", "type: http, path: /healthz", web)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write configuration: %w", err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load generated configuration: %w", err)
	}
	return cfg, nil
}

// measured returns the first and past-the-last window measured for a contender started at t.
func measured(s settings, t time.Time) (int64, int64) {
	from := prober.Window(t.Add(s.warmup), s.interval) + 1
	return from, from + int64(s.duration/s.interval)
}

func windowStart(n int64, interval time.Duration) time.Time {
	return time.Unix(0, n*int64(interval))
}

func waitUntil(t time.Time) { <-time.After(time.Until(t)) }

// runDetour runs the prober in a child process against in-process JetStream and tallies the
// results it publishes.
func runDetour(s settings, dir, cfgFile string, keys []string, jitter time.Duration) (result, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "js"), NoLog: true, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		return result{}, fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return result{}, fmt.Errorf("start nats: not ready within 10s")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return result{}, fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return result{}, fmt.Errorf("open jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Memory: true, ProbeRetention: 2 * time.Minute}); err != nil {
		return result{}, err
	}

	start := time.Now()
	from, to := measured(s, start)
	tl := newTally(keys, s.interval, jitter, s.onTime, from, to)
	// Keep the messages as they come and decode them after the measurement, so the benchmark's
	// own work does not compete with the prober for the CPU while it is measured.
	var mu sync.Mutex
	var raw [][]byte
	sub, err := nc.Subscribe(events.SubjectProbes, func(m *nats.Msg) {
		mu.Lock()
		raw = append(raw, m.Data)
		mu.Unlock()
	})
	if err != nil {
		return result{}, fmt.Errorf("subscribe to results: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)

	self, err := os.Executable()
	if err != nil {
		return result{}, fmt.Errorf("find own executable: %w", err)
	}
	runFor := windowStart(to, s.interval).Sub(start) + 2*time.Second
	cmd := exec.Command(self, "-role=prober", "-nats="+ns.ClientURL(), "-config="+cfgFile,
		fmt.Sprintf("-for=%s", runFor), fmt.Sprintf("-batch=%s", s.batch), "-cpuprofile="+s.profile)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	benchenv.DiesWithThis(cmd)
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start prober: %w", err)
	}
	r, err := sample(cmd.Process.Pid, s, from, to)
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("prober exited: %w", werr)
	}
	if err != nil {
		return result{}, err
	}
	_ = nc.Flush()
	_ = sub.Unsubscribe()
	mu.Lock()
	defer mu.Unlock()
	for _, data := range raw {
		tallyMessage(tl, data)
	}
	r.name, r.sum = "detour prober", tl.summary()
	return r, nil
}

// sample reads a process's CPU time at the start and end of the measured windows, and its
// peak memory at the end.
func sample(pid int, s settings, from, to int64) (result, error) {
	waitUntil(windowStart(from, s.interval))
	u0, s0, err := benchenv.CPUTimes(pid)
	if err != nil {
		return result{}, err
	}
	h0, err := benchenv.CPUTime(os.Getpid())
	if err != nil {
		return result{}, err
	}
	w0 := time.Now()
	waitUntil(windowStart(to, s.interval))
	u1, s1, err := benchenv.CPUTimes(pid)
	if err != nil {
		return result{}, err
	}
	wall := time.Since(w0)
	h1, err := benchenv.CPUTime(os.Getpid())
	if err != nil {
		return result{}, err
	}
	rss, err := benchenv.PeakRSS(pid)
	if err != nil {
		return result{}, err
	}
	// Let the last window's checks complete and arrive.
	waitUntil(windowStart(to, s.interval).Add(time.Second))
	return result{cpu: u1 + s1 - u0 - s0, user: u1 - u0, wall: wall, rss: rss, harness: h1 - h0}, nil
}

func tallyMessage(tl *tally, data []byte) {
	e, err := events.Decode(data)
	if err != nil {
		return
	}
	add := func(r events.ProbeResult) {
		start := r.At.Add(-time.Duration(r.LatencyMicros) * time.Microsecond)
		tl.record(r.App+"/"+r.Pool+"/"+r.Endpoint, start, r.OK, r.Check+" "+r.ErrorClass)
	}
	switch e.Type {
	case events.TypeProbeCompleted:
		var r events.ProbeResult
		if e.Payload(&r) == nil {
			add(r)
		}
	case events.TypeProbeBatchCompleted:
		var b events.ProbeBatch
		if e.Payload(&b) == nil {
			for _, r := range b.Results {
				add(r)
			}
		}
	}
}

// proberRole is the child: one prober worker for a bounded time.
func proberRole(s settings) error {
	cfg, err := config.Load(s.configFile)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	if s.profile != "" {
		f, err := os.Create(s.profile)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.proberUntil)
	defer cancel()
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	return prober.Run(ctx, prober.Options{JS: js, Config: cfg, Region: "bench", Name: "b1", Log: log,
		BatchWindow: s.batch, JoinDelay: time.Millisecond})
}
