package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

func main() { benchenv.Exit(run()) }

func run() int {
	if len(os.Args) > 1 && os.Args[1] == "serve-detour" {
		ctx, stop := signal.NotifyContext(context.Background(), benchenv.StopSignals()...)
		defer stop()
		if err := serveDetour(ctx, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench serve-detour:", err)
			return 1
		}
		return 0
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long dnsperf runs against each server")
	flag.IntVar(&o.clients, "clients", 10, "dnsperf clients (-c)")
	flag.IntVar(&o.outstanding, "outstanding", 100, "dnsperf outstanding queries (-q)")
	flag.IntVar(&o.changes, "changes", 100, "state changes per second during the detour-changing run (to STATE) and the detour-control run (to a stream the server does not follow)")
	flag.BoolVar(&o.latency, "latency", true, "run every server again at one load (half the slowest saturation) for p50/p99 and CPU per query")
	flag.Float64Var(&o.atLoad, "load", 0, "the common load of the latency run in queries per second (default: half the slowest saturation)")
	flag.IntVar(&o.rounds, "rounds", 3, "how many times every run measures every server, each round starting one server later (the tables show the medians, and each round's ratio to its best peer)")
	flag.StringVar(&o.mix, "mix", "mixed", "queries: mixed (the app name half the time) or app (the app name only)")
	flag.IntVar(&o.pdnsCache, "pdns-cache-ttl", 20, "PowerDNS packet cache TTL in seconds (its default 20); 0 turns it off")
	netns := flag.Bool("netns", true, "run the servers and dnsperf in a network namespace of their own, with loopback only, so that no firewall rule or connection tracking of the host's is on their path (needs root; without it, or with -netns=false, the run stays in the host's namespace and the report says so)")
	flag.BoolVar(&pinned, "pin", false, "run every server on CPU 0 and dnsperf on CPU 1 (taskset; once a server answers, every thread of it and of its children is bound to CPU 0 again, as Knot binds its workers to CPUs itself), so that the load generator has a core of its own")
	stages := flag.Bool("stages", false, "after the latency rounds, run every server once more at the common load with its system calls traced (needs root and tracefs), and show where a query's time goes: dnsperf's send to the server's read, the read to the reply, the reply to dnsperf's receive")
	flag.StringVar(&o.keep, "keep", "", "keep each latency run's dnsperf output (a line per query, in the order the answers came) in this directory, as SERVER-round-N.txt (SERVER-stages.txt for -stages)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the Detour server of the detour run to this file")
	only := flag.String("only", "", "comma-separated targets to run (default: all): "+strings.Join(targetNames, ","))
	flag.Func("variant", "also measure a variant of Detour's server, as target detour-NAME: NAME=[PROGRAM][,K=V...], where PROGRAM is a dnsbench built from another tree (its serve-detour runs) and K=V is added to the server's environment (repeatable)", func(s string) error {
		var err error
		o.variants, err = addVariant(o.variants, s)
		return err
	})
	flag.BoolVar(&o.variantsChange, "variant-changes", false, "have every -variant follow the state changes as detour-changing does, and read it against detour-control, which -only then runs too: a variant then measures the path a change takes through the server")
	flag.Parse()
	where, err := isolate(*netns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		return 1
	}
	if where.Done {
		return where.Status
	}
	o.network = whereLine(where)
	if err := checkVariantChanges(o); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		return 2
	}
	if *only != "" {
		o.only = onlyTargets(*only, o)
	}
	o.profile = *profile
	if o.keep != "" {
		if !o.latency {
			fmt.Fprintln(os.Stderr, "dnsbench: -keep keeps the latency runs' output: it needs the latency run (-latency=true)")
			return 2
		}
		// Empty, so that the files read afterwards are this run's, none of an earlier one's.
		ents, err := os.ReadDir(o.keep)
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "dnsbench: -keep: %v\n", err)
			return 2
		case len(ents) > 0:
			fmt.Fprintf(os.Stderr, "dnsbench: -keep %s: not empty (%d entries): give an empty directory\n", o.keep, len(ents))
			return 2
		}
	}
	if *stages {
		if !o.latency {
			fmt.Fprintln(os.Stderr, "dnsbench: -stages traces a run at the common load: it needs the latency run (-latency=true)")
			return 2
		}
		t, err := newStageTracer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "dnsbench:", err)
			return 2
		}
		o.stages = t
	}
	ctx, leave := context.WithCancelCause(context.Background())
	defer leave(nil)
	// SIGTERM too (timeout(1), kill): -stages must switch the kernel's tracing off on the way out.
	// Ctrl-C unless ignored: a background job's is meant for another (benchenv.StopSignals).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, benchenv.StopSignals()...)
	defer func() {
		signal.Stop(sigs)
		close(sigs)
	}()
	go func() {
		if s, ok := <-sigs; ok {
			leave(stopped{s.String(), s.(syscall.Signal)})
		}
	}()
	// A report whose reader left (piped into head) stops the run as those signals do: Go would
	// end the program with SIGPIPE at its next write, leaving the work directory behind. With
	// SIGPIPE caught, that write fails with EPIPE instead (the channel is never read: a broken
	// pipe elsewhere, a server's socket, is the code's to handle).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	watchReader(os.Stdout, leave)
	err = bench(ctx, o, reportTo{os.Stdout, leave})
	var stop stopped
	if errors.As(context.Cause(ctx), &stop) {
		fmt.Fprintf(os.Stderr, "dnsbench: %s: stopped\n", stop.why)
		return 128 + int(stop.by) // as a shell shows a command that signal ended
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		return 1
	}
	return 0
}

// stopped is why a run stopped before its end (SIGINT, SIGTERM, its report's reader leaving),
// with the signal that ends a command for that reason.
type stopped struct {
	why string
	by  syscall.Signal
}

func (s stopped) Error() string { return s.why + ": stopped" }

// errReaderLeft is why a run whose report nobody reads any more stopped.
var errReaderLeft = stopped{"the report's reader left (broken pipe)", syscall.SIGPIPE}

// reportTo is the report's writer: a write that finds no reader (EPIPE) stops the run.
type reportTo struct {
	w     io.Writer
	leave context.CancelCauseFunc
}

func (r reportTo) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		r.leave(errReaderLeft)
	}
	return n, err
}

// whereLine is the report's first line: where the servers and dnsperf run.
func whereLine(where benchenv.Netns) string { return "dnsbench: in " + where.String() }

// isolate runs the servers and dnsperf in a network namespace of its own, with only its
// loopback (benchenv.Isolate), unless netns is false (-netns=false). Every datagram of the
// benchmark crosses the loopback twice (into the server, back to dnsperf): on a host running
// Docker, the host's netfilter tables and connection tracking would take a cost alike for every
// server and so shrink every ratio towards 1 (an authoritative server is usually exempt from
// connection tracking, a NOTRACK rule, for that reason). Done says the run was a process of its
// own, which ended with Status.
func isolate(netns bool) (benchenv.Netns, error) {
	if !netns {
		return benchenv.Host("-netns=false"), nil
	}
	return benchenv.Isolate("dnsbench")
}

// onlyTargets is the targets -only names (comma-separated), with every variant, and with
// detour-control when the variants follow changes (-variant-changes, refused without a variant
// by checkVariantChanges), since they are read against it.
func onlyTargets(list string, o options) []string {
	only := strings.Split(list, ",")
	for _, v := range o.variants {
		only = append(only, v.name)
	}
	if o.variantsChange {
		only = append(only, "detour-control")
	}
	return only
}

// checkVariantChanges refuses -variant-changes without a -variant, which would change nothing.
func checkVariantChanges(o options) error {
	if o.variantsChange && len(o.variants) == 0 {
		return errors.New("-variant-changes has the variants follow the changes: give at least one -variant")
	}
	return nil
}
