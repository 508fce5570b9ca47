package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

func main() { benchenv.Exit(run()) }

type settings struct {
	sizes       []int
	detour      string
	probers     int
	appsPerEdge int
	dnsLoad     int
	interval    time.Duration
	jitter      time.Duration
	keep        bool
	profile     bool

	// The roles the benchmark runs in its own children.
	role string
	n    int
	net  int
	dir  string
}

// checkJitter is the jitter of the benchmark's checks: -jitter (the configuration's default is
// none).
func (s settings) checkJitter() time.Duration { return s.jitter }

func run() int {
	var s settings
	var sizes string
	flag.StringVar(&sizes, "n", "1000,10000", "comma-separated region sizes (endpoints killed at once)")
	flag.StringVar(&s.detour, "detour", "", "the detour binary (default: built from this tree with go build)")
	flag.IntVar(&s.probers, "probers", 2, "prober workers checking the endpoints")
	flag.IntVar(&s.appsPerEdge, "apps-per-edge", 10000, "apps each edge fronts (one edge process per this many apps)")
	flag.IntVar(&s.dnsLoad, "dns-load", 10000, "queries per second dnsperf offers the DNS server, static and during each storm")
	flag.DurationVar(&s.interval, "interval", time.Second, "check interval (fall 3, rise 2, timeout half the interval)")
	flag.DurationVar(&s.jitter, "jitter", 0, "check jitter (default none, as the configuration's)")
	flag.BoolVar(&s.keep, "keep", false, "keep the working directory (logs, configuration)")
	flag.BoolVar(&s.profile, "profile", false, "record each role's CPU with perf during each storm and print where the two busiest spent it")
	flag.StringVar(&s.role, "role", "bench", "bench, or nats or listeners (internal)")
	flag.IntVar(&s.n, "listeners", 0, "listeners to hold (role listeners)")
	flag.IntVar(&s.net, "net", 0, "second octet of the listeners' addresses (role listeners)")
	flag.StringVar(&s.dir, "dir", "", "JetStream's directory (role nats)")
	flag.Parse()
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 60000 {
			fmt.Fprintf(os.Stderr, "regionbench: -n: want sizes from 1 to 60000, got %q\n", f)
			return 2
		}
		s.sizes = append(s.sizes, n)
	}
	if s.probers < 1 || s.appsPerEdge < 1 || s.dnsLoad < 1 || s.interval <= 0 || s.jitter < 0 || s.jitter > s.interval {
		fmt.Fprintln(os.Stderr, "regionbench: -probers, -apps-per-edge, -dns-load and -interval must be positive, -jitter within the interval")
		return 2
	}
	var err error
	switch s.role {
	case "bench":
		var where benchenv.Netns
		if where, err = isolate(); err == nil {
			if where.Done {
				return where.Status
			}
			err = bench(s, where)
		}
	case "nats":
		err = natsRole(s.dir)
	case "listeners":
		err = listenersRole(s.net, s.n)
	default:
		fmt.Fprintf(os.Stderr, "regionbench: -role: want bench, nats or listeners, got %q\n", s.role)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "regionbench: %v\n", err)
		return 1
	}
	return 0
}

// isolate runs the benchmark in a network namespace of its own (benchenv.Isolate), which it
// needs: its firewall rule must not touch the host's. Done says the run was a process of its own,
// which ended with Status.
func isolate() (benchenv.Netns, error) {
	where, err := benchenv.Isolate("regionbench")
	if err == nil && !where.Done && !where.Own {
		return where, fmt.Errorf("needs a network namespace of its own, for its firewall rule (run it as root): %s", where.Why)
	}
	return where, err
}
