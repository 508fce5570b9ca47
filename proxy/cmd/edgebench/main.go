package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edgebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "internal: run as the backend or the edge of a benchmark")
	listen := fs.String("listen", "", "internal: the role's listen address")
	backend := fs.String("backend", "", "internal: the backend address the edge forwards to")
	duration := fs.Duration("duration", 5*time.Second, "how long each target is measured")
	warmup := fs.Duration("warmup", time.Second, "load before each measurement that is not counted")
	conns := fs.Int("connections", 32, "concurrent keep-alive connections of the load generator")
	body := fs.Int("body", 1024, "bytes in each backend response")
	rounds := fs.Int("rounds", 3, "times each target is measured, in turn; the table shows the medians")
	rate := fs.Int("rate", 5000, "requests/s of the fixed-rate latency measurement (0: none)")
	profile := fs.String("edge-cpuprofile", "", "write the CPU profile of the Detour edge to this file (of the last round)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "backend":
		err = serveBackend(ctx, *listen, *body)
	case "edge":
		err = serveEdge(ctx, *listen, *backend, *profile)
	case "":
		err = bench(ctx, stdout, stderr, benchOptions{duration: *duration, warmup: *warmup, conns: *conns, body: *body, rounds: max(*rounds, 1), rate: *rate, profile: *profile})
	default:
		fmt.Fprintf(stderr, "edgebench: -role: want backend or edge, got %q\n", *role)
		return 2
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "edgebench: %v\n", err)
		return 1
	}
	return 0
}
