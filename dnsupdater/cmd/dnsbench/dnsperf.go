package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// dnsperf runs dnsperf against addr and returns the queries per second of its summary and, in the
// latency run (o.load > 0), the median and 99th percentile of every query's latency.
//
// Only the latency run asks dnsperf for a line per query (-v): at saturation those lines cost
// dnsperf a write per query, on the core it needs for sending. dnsperf's output goes to a file
// read after it exits: read through a pipe while it ran, the lines cost this program about a
// quarter of a core at 65,000 queries a second, on the cores the server and dnsperf share.
func dnsperf(ctx context.Context, o options, queries, addr string) (_ result, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return result{}, fmt.Errorf("split %s: %w", addr, err)
	}
	args := []string{"-s", host, "-p", port, "-d", queries,
		"-c", strconv.Itoa(o.clients), "-q", strconv.Itoa(o.outstanding),
		"-l", strconv.FormatFloat(o.duration.Seconds(), 'f', -1, 64)}
	if o.load > 0 {
		args = append(args, "-Q", strconv.FormatFloat(o.load, 'f', 0, 64), "-v")
	}
	out, kept, err := dnsperfOutput(o, queries)
	if err != nil {
		return result{}, fmt.Errorf("run dnsperf: %w", err)
	}
	defer func() {
		// A kept file stays only when its run counts: a half-written one would read as a run.
		if !kept || err != nil {
			os.Remove(out.Name())
		}
	}()
	defer out.Close()
	name, argv := pin(clientCPU, "dnsperf", args)
	cmd := exec.CommandContext(ctx, name, argv...)
	benchenv.DiesWithThis(cmd)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := lastLine(stderr.Bytes()); msg != "" {
			return result{}, fmt.Errorf("run dnsperf: %w: %s", err, msg)
		}
		return result{}, fmt.Errorf("run dnsperf: %w", err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return result{}, fmt.Errorf("read dnsperf's output: %w", err)
	}
	r, lat := parseDNSPerf(bufio.NewScanner(out))
	r.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if r.qps == 0 {
		return result{}, fmt.Errorf("dnsperf reported no query answered")
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.p50 = time.Duration(lat[len(lat)/2]) * time.Microsecond
		r.p99 = time.Duration(lat[len(lat)*99/100]) * time.Microsecond
	}
	return r, nil
}

// dnsperfOutput creates the file dnsperf's output goes to: a temporary one beside the queries,
// or, in a latency run with -keep, one in the directory -keep names, which is kept.
func dnsperfOutput(o options, queries string) (f *os.File, kept bool, err error) {
	if o.keep != "" && o.load > 0 {
		if o.keepAs == "" {
			return nil, false, fmt.Errorf("-keep: no name given to this run's output")
		}
		f, err = os.OpenFile(filepath.Join(o.keep, o.keepAs), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		return f, true, err
	}
	f, err = os.CreateTemp(filepath.Dir(queries), "dnsperf-*.out")
	return f, false, err
}

// lastLine is the last line of what dnsperf wrote to its standard error that is not blank: why it
// failed.
func lastLine(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.TrimSpace(lines[len(lines)-1]))
}

// parseDNSPerf reads dnsperf's verbose output: "> NOERROR name type 0.000123" per query, then
// the statistics. Latencies are read without allocating: there are millions of them.
func parseDNSPerf(sc *bufio.Scanner) (result, []int32) {
	var r result
	lat := make([]int32, 0, 1<<21)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("> ")) {
			if us, ok := micros(line[bytes.LastIndexByte(line, ' ')+1:]); ok {
				lat = append(lat, us)
			}
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(string(line)), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Queries per second":
			r.qps = finite(f[0])
		case "Queries lost":
			if len(f) > 1 {
				r.lost = finite(strings.Trim(f[1], "(%)"))
			}
		}
	}
	return r, lat
}

// finite reads a figure of dnsperf's summary; what is not a finite number (dnsperf prints
// "nan" for a rate over nothing) reads as 0.
func finite(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// micros reads seconds written as "0.000123" as whole microseconds.
func micros(b []byte) (int32, bool) {
	var whole, frac int64
	digits := -1
	for _, c := range b {
		switch {
		case c == '.' && digits < 0:
			digits = 0
		case c >= '0' && c <= '9' && digits < 0:
			whole = whole*10 + int64(c-'0')
		case c >= '0' && c <= '9':
			if digits < 6 {
				frac = frac*10 + int64(c-'0')
				digits++
			}
		default:
			return 0, false
		}
	}
	for ; digits < 6; digits++ {
		frac *= 10
	}
	return int32(whole*1e6 + frac), true
}
