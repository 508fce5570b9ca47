package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
)

type benchOptions struct {
	duration, warmup time.Duration
	conns, body      int
	// rounds measures every target this many times, in turn, so that load from elsewhere on the
	// machine falls on all of them alike; the table shows the medians.
	rounds int
	// rate, when positive, also measures every target at this fixed request rate.
	rate int
	// profile, when set, is the file the edge writes its CPU profile to.
	profile string
}

// bench starts the backend, then measures it directly and through each proxy in turn, for
// o.rounds rounds, and prints the medians.
func bench(ctx context.Context, stdout, stderr io.Writer, o benchOptions) error {
	dir, err := os.MkdirTemp("", "edgebench-")
	if err != nil {
		return fmt.Errorf("make work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	backend, err := freeAddr()
	if err != nil {
		return err
	}
	bp, err := start(ctx, "backend", backend, dir+"/backend.log", self, "-role", "backend", "-listen", backend, "-body", strconv.Itoa(o.body))
	if err != nil {
		return err
	}
	defer bp.stop()

	type target struct {
		name string
		argv func(listen string) ([]string, error) // nil: the backend itself
	}
	targets := []target{
		{"direct", nil},
		{"detour-edge", func(l string) ([]string, error) {
			argv := []string{self, "-role", "edge", "-listen", l, "-backend", backend}
			if o.profile != "" {
				argv = append(argv, "-edge-cpuprofile", o.profile)
			}
			return argv, nil
		}},
		{"nginx", func(l string) ([]string, error) {
			path, err := writeFile(dir, "nginx.conf", nginxConfig(dir, l, backend))
			return []string{"nginx", "-p", dir, "-c", path, "-g", "daemon off;"}, err
		}},
		{"haproxy", func(l string) ([]string, error) {
			path, err := writeFile(dir, "haproxy.cfg", haproxyConfig(l, backend))
			return []string{"haproxy", "-db", "-f", path}, err
		}},
	}
	rounds, paced := map[string][]result{}, map[string][]result{}
	var order []string
	for round := range o.rounds {
		for _, t := range targets {
			addr := backend
			var p *process
			if t.argv != nil {
				if addr, err = freeAddr(); err != nil {
					return err
				}
				argv, err := t.argv(addr)
				if err != nil {
					return err
				}
				if _, err := exec.LookPath(argv[0]); err != nil {
					if round == 0 {
						fmt.Fprintf(stderr, "edgebench: %s skipped: %s is not installed (deployments/install-packages.sh deployments/packages/bench.txt)\n", t.name, argv[0])
					}
					continue
				}
				if p, err = start(ctx, t.name, addr, dir+"/"+t.name+".log", argv...); err != nil {
					return err
				}
			}
			r := measure(ctx, t.name, addr, o.conns, o.warmup, o.duration)
			var f result
			if o.rate > 0 {
				f = measureRate(ctx, t.name, addr, o.conns, o.rate, o.warmup, o.duration)
			}
			if p != nil {
				p.stop()
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if round == 0 {
				order = append(order, t.name)
			}
			rounds[t.name] = append(rounds[t.name], r)
			paced[t.name] = append(paced[t.name], f)
		}
	}
	var closed, fixed []result
	for _, name := range order {
		closed = append(closed, median(rounds[name]))
		fixed = append(fixed, median(paced[name]))
	}
	report(stdout, closed, fixed, o)
	return nil
}

// median combines the rounds of one target: the median of each figure, the sum of errors.
func median(rs []result) result {
	out := result{name: rs[0].name, elapsed: time.Second}
	var rps []float64
	var p50, p99 []time.Duration
	for _, r := range rs {
		rps = append(rps, r.rps())
		p50 = append(p50, r.p50)
		p99 = append(p99, r.p99)
		out.errors += r.errors
	}
	slices.Sort(rps)
	slices.Sort(p50)
	slices.Sort(p99)
	out.requests = int(rps[len(rps)/2])
	out.p50, out.p99 = p50[len(p50)/2], p99[len(p99)/2]
	return out
}

// report prints both tables and the verdicts: throughput at saturation against HAProxy's, and
// the p99 overhead over the backend reached directly at the same fixed rate.
func report(w io.Writer, closed, fixed []result, o benchOptions) {
	fmt.Fprintf(w, "edgebench: %d connections, %d-byte responses, loopback; each target %s after %s warm-up, medians of %d rounds\n",
		o.conns, o.body, o.duration, o.warmup, o.rounds)
	fmt.Fprintf(w, "\nsaturation (closed loop: each connection sends its next request when the answer arrives)\n")
	table(w, closed)
	if o.rate > 0 {
		fmt.Fprintf(w, "\nfixed rate %d req/s (latency counted from when each request was due)\n", o.rate)
		table(w, fixed)
	}
	edge, ok := find(closed, "detour-edge")
	if !ok {
		return
	}
	fmt.Fprintln(w)
	if ha, ok := find(closed, "haproxy"); ok && ha.rps() > 0 {
		ratio := edge.rps() / ha.rps()
		fmt.Fprintf(w, "throughput detour-edge / haproxy = %.2f (target >= 0.90): %s\n", ratio, verdict(ratio >= 0.9))
	}
	pacedEdge, ok1 := find(fixed, "detour-edge")
	direct, ok2 := find(fixed, "direct")
	if o.rate > 0 && ok1 && ok2 {
		over := pacedEdge.p99 - direct.p99
		fmt.Fprintf(w, "p99 overhead of detour-edge over direct at %d req/s = %s (target < 1 ms): %s\n", o.rate, fmtMS(over), verdict(over < time.Millisecond))
	}
}

func table(w io.Writer, rs []result) {
	direct, hasDirect := find(rs, "direct")
	ha, hasHA := find(rs, "haproxy")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp99\terrors\tvs haproxy\tp99 over direct\t")
	for _, r := range rs {
		vsHA, over := "-", "-"
		if hasHA && ha.rps() > 0 {
			vsHA = fmt.Sprintf("%.2f", r.rps()/ha.rps())
		}
		if hasDirect && r.name != "direct" {
			over = fmtMS(r.p99 - direct.p99)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%d\t%s\t%s\t\n", r.name, r.rps(), fmtMS(r.p50), fmtMS(r.p99), r.errors, vsHA, over)
	}
	_ = tw.Flush()
}

func find(rs []result, name string) (result, bool) {
	for _, r := range rs {
		if r.name == name {
			return r, true
		}
	}
	return result{}, false
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
