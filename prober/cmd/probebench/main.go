package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

func main() { benchenv.Exit(run()) }

type settings struct {
	tcp, http    int
	interval     time.Duration
	duration     time.Duration
	warmup       time.Duration
	onTime       time.Duration
	batch        time.Duration
	blackbox     string
	skipPeer     bool
	role         string
	natsURL      string
	configFile   string
	proberUntil  time.Duration
	profile      string
	compareScale float64
}

func run() int {
	var s settings
	flag.IntVar(&s.tcp, "tcp", 10000, "TCP endpoints")
	flag.IntVar(&s.http, "http", 2000, "HTTP endpoints")
	flag.DurationVar(&s.interval, "interval", time.Second, "check interval")
	flag.DurationVar(&s.duration, "duration", 20*time.Second, "measured time of each contender")
	flag.DurationVar(&s.warmup, "warmup", 3*time.Second, "unmeasured time before each measurement")
	flag.DurationVar(&s.onTime, "on-time", 50*time.Millisecond, "a check started within this of its instant is on time")
	flag.DurationVar(&s.batch, "batch", 0, "prober batch window (0: the prober's default, 2ms; negative: one message per result)")
	flag.StringVar(&s.blackbox, "blackbox", "prometheus-blackbox-exporter", "blackbox_exporter binary")
	flag.BoolVar(&s.skipPeer, "skip-peer", false, "measure Detour only")
	flag.Float64Var(&s.compareScale, "compare-scale", 0.1, "also compare both at this share of the endpoints, a rate blackbox_exporter sustains (0: skip)")
	// The parent runs the prober in a child process so its CPU and memory are the prober's alone.
	flag.StringVar(&s.role, "role", "bench", "bench, or prober (internal)")
	flag.StringVar(&s.natsURL, "nats", "", "NATS URL (role prober)")
	flag.StringVar(&s.configFile, "config", "", "configuration file (role prober)")
	flag.DurationVar(&s.proberUntil, "for", 0, "how long to probe (role prober)")
	flag.StringVar(&s.profile, "cpuprofile", "", "write the prober's CPU profile to this file")
	flag.Parse()
	if s.tcp < 0 || s.http < 0 || s.tcp+s.http == 0 || s.tcp+s.http > 60000 {
		fmt.Fprintln(os.Stderr, "probebench: -tcp and -http: want 1 to 60000 endpoints in all")
		return 2
	}
	if s.interval <= 0 || s.duration <= 0 || s.warmup < 0 {
		fmt.Fprintln(os.Stderr, "probebench: -interval and -duration must be positive, -warmup not negative")
		return 2
	}
	var err error
	switch s.role {
	case "bench":
		var where benchenv.Netns
		if where, err = benchenv.Isolate("probebench"); err == nil {
			if where.Done {
				return where.Status
			}
			err = bench(s, where)
		}
	case "prober":
		err = proberRole(s)
	default:
		fmt.Fprintf(os.Stderr, "probebench: -role: want bench or prober, got %q\n", s.role)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probebench: %v\n", err)
		return 1
	}
	return 0
}
