package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestParseDNSPerfReadsLatenciesAndTheSummary(t *testing.T) {
	out := `[Status] Sending queries (to 127.0.0.1:5353)
> NOERROR shop.demo.test A 0.000284
> NOERROR www.demo.test A 0.0001
> NOERROR api.demo.test A 1.5
> NOERROR api.demo.test A garbage
Statistics:

  Queries sent:         103789
  Queries lost:         12 (0.01%)
  Queries per second:   103070.393218
`
	r, lat := parseDNSPerf(bufio.NewScanner(strings.NewReader(out)))
	if r.qps != 103070.393218 || r.lost != 0.01 {
		t.Errorf("summary: want 103070.393218 qps and 0.01%% lost, got %v and %v", r.qps, r.lost)
	}
	want := []int32{284, 100, 1500000}
	if len(lat) != len(want) {
		t.Fatalf("latencies: want %v, got %v", want, lat)
	}
	for i := range want {
		if lat[i] != want[i] {
			t.Errorf("latency %d: want %d µs, got %d", i, want[i], lat[i])
		}
	}
}

func TestParseDNSPerfReadsARunThatAnsweredNothingAsZero(t *testing.T) {
	out := `Statistics:

  Queries sent:         0
  Queries completed:    0 (nan%)
  Queries lost:         0 (nan%)
  Queries per second:   nan
`
	r, lat := parseDNSPerf(bufio.NewScanner(strings.NewReader(out)))
	if r.qps != 0 || r.lost != 0 || len(lat) != 0 {
		t.Errorf("want 0 qps, 0 %% lost and no latencies, got %v, %v and %v", r.qps, r.lost, lat)
	}
}

func TestTreeCPUCountsThisProcess(t *testing.T) {
	// Burn some CPU, then this process must show at least a clock tick of it.
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	if got := treeCPU(os.Getpid()); got < clockTick {
		t.Errorf("want at least %s of CPU for this process, got %s (%d)", clockTick, got, x)
	}
}

// fakeDNSPerf puts a dnsperf on PATH that records its arguments in the returned file and
// prints what the real one does: the server it sends to, with -v a line per query (latencies
// 100, 200 … 1000 µs), then the summary.
func fakeDNSPerf(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := `#!/bin/sh
echo "$@" > ` + argsFile + `
host= port=
while [ $# -gt 0 ]; do
  case "$1" in -s) host=$2 ;; -p) port=$2 ;; esac
  shift
done
echo "[Status] Sending queries (to $host:$port)"
set -- $(cat ` + argsFile + `)
for a in "$@"; do
  if [ "$a" = "-v" ]; then
    for us in 100 200 300 400 500 600 700 800 900 1000; do echo "> NOERROR shop.demo.test A 0.000$us" | sed 's/0.0001000/0.001000/'; done
  fi
done
printf 'Statistics:\n\n  Queries sent:         10\n  Queries lost:         0 (0.00%%)\n  Queries per second:   2000.5\n'
`
	scriptedDNSPerfIn(t, dir, script)
	return argsFile
}

// scriptedDNSPerf puts a dnsperf on PATH that runs script.
func scriptedDNSPerf(t *testing.T, script string) {
	t.Helper()
	scriptedDNSPerfIn(t, t.TempDir(), script)
}

// scriptedDNSPerfIn writes script as dir/dnsperf and puts dir first on PATH.
func scriptedDNSPerfIn(t *testing.T, dir, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "dnsperf"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestOnlyTheLatencyRunAsksDNSPerfForALinePerQuery(t *testing.T) {
	argsFile := fakeDNSPerf(t)
	queries := filepath.Join(t.TempDir(), "queries.txt")
	if err := os.WriteFile(queries, []byte("shop.demo.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options{clients: 10, outstanding: 100, duration: time.Second}
	sat, err := dnsperf(context.Background(), o, queries, "127.0.0.1:5300")
	if err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(argsFile)
	if strings.Contains(string(args), "-v") || strings.Contains(string(args), "-Q") {
		t.Errorf("saturation run: dnsperf %s, want neither -v nor -Q", args)
	}
	if sat.qps != 2000.5 || sat.p50 != 0 || sat.p99 != 0 {
		t.Errorf("saturation run: %+v, want 2000.5 qps and no latency", sat)
	}
	o.load = 2000
	at, err := dnsperf(context.Background(), o, queries, "127.0.0.1:5300")
	if err != nil {
		t.Fatal(err)
	}
	args, _ = os.ReadFile(argsFile)
	if !strings.Contains(string(args), "-Q 2000 -v") {
		t.Errorf("latency run: dnsperf %s, want -Q 2000 -v", args)
	}
	if at.p50 != 600*time.Microsecond || at.p99 != time.Millisecond {
		t.Errorf("latency run: p50 %s p99 %s, want 600µs and 1ms", at.p50, at.p99)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(queries), "dnsperf-*")); len(left) != 0 {
		t.Errorf("dnsperf's output files left behind: %v", left)
	}
}

func TestAFailedDNSPerfSaysWhy(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\necho '[Status] Command line: dnsperf' >&2\necho 'Error: invalid port: 99999' >&2\nexit 1\n")
	queries := filepath.Join(t.TempDir(), "queries.txt")
	if err := os.WriteFile(queries, []byte("shop.demo.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := dnsperf(context.Background(), options{clients: 1, outstanding: 1, duration: time.Second}, queries, "127.0.0.1:5300")
	if err == nil || !strings.Contains(err.Error(), "exit status 1: Error: invalid port: 99999") {
		t.Fatalf("error = %v, want dnsperf's exit status and its last line on standard error", err)
	}
}

func TestKeepKeepsEachLatencyRunsLinesUnderItsServerAndRound(t *testing.T) {
	fakeDNSPerf(t)
	queries := filepath.Join(t.TempDir(), "queries.txt")
	if err := os.WriteFile(queries, []byte("shop.demo.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := t.TempDir()
	o := options{clients: 10, outstanding: 100, duration: time.Second, keep: keep, keepAs: "knot-round-2.txt"}
	if _, err := dnsperf(context.Background(), o, queries, "127.0.0.1:5300"); err != nil {
		t.Fatal(err)
	}
	if kept, _ := os.ReadDir(keep); len(kept) != 0 {
		t.Errorf("a saturation run kept %d files, want none (it asks for no line per query)", len(kept))
	}
	o.load = 2000
	at, err := dnsperf(context.Background(), o, queries, "127.0.0.1:5300")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(keep, "knot-round-2.txt"))
	if err != nil {
		t.Fatalf("the latency run's output was not kept: %v", err)
	}
	if n := strings.Count(string(b), "\n> NOERROR"); n != 10 || !strings.Contains(string(b), "Queries per second:   2000.5") {
		t.Errorf("kept output has %d query lines (want 10) or lacks its summary:\n%s", n, b)
	}
	if at.p99 != time.Millisecond {
		t.Errorf("p99 %s read from a kept file, want 1ms", at.p99)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(queries), "dnsperf-*")); len(left) != 0 {
		t.Errorf("dnsperf's temporary files left behind: %v", left)
	}
}

// answering starts a server on addr that answers every query with an address, as a server under
// test does once it is up.
func answering(_ context.Context, _, addr string) (running, error) {
	srv := &dns.Server{Addr: addr, Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	})}
	up := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(up) }
	failed := make(chan error, 1)
	go func() { failed <- srv.ListenAndServe() }()
	select {
	case <-up:
	case err := <-failed:
		return running{}, err
	}
	return running{cpu: func() time.Duration { return 0 }, pid: os.Getpid(), stop: func() { _ = srv.Shutdown() }}, nil
}

func TestEveryLatencyRoundIsKeptUnderItsServerAndRound(t *testing.T) {
	fakeDNSPerf(t)
	// Each target is a server on loopback answering every query, as a real one would once up;
	// its addresses say which server each kept file was measured against.
	var mu sync.Mutex
	addrs := map[string]string{}
	answeringAs := func(name string) startFunc {
		return func(ctx context.Context, dir, addr string) (running, error) {
			mu.Lock()
			addrs[addr] = name
			mu.Unlock()
			return answering(ctx, dir, addr)
		}
	}
	dir := t.TempDir()
	queries := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(queries, []byte("shop.demo.test A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := t.TempDir()
	o := options{rounds: 2, load: 2000, clients: 1, outstanding: 1, duration: time.Second, queries: queries, keep: keep}
	ts := []target{{name: "detour", start: answeringAs("detour")}, {name: "knot", start: answeringAs("knot")}}
	if _, err := measureRounds(context.Background(), o, dir, ts, func(result, int) {}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(keep)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		b, err := os.ReadFile(filepath.Join(keep, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, to, _ := strings.Cut(string(b), "(to ")
		to, _, _ = strings.Cut(to, ")")
		if server := addrs[to]; !strings.HasPrefix(e.Name(), server+"-") {
			t.Errorf("%s holds a run against %s (%q)", e.Name(), to, server)
		}
	}
	if want := "detour-round-1.txt detour-round-2.txt knot-round-1.txt knot-round-2.txt"; strings.Join(got, " ") != want {
		t.Errorf("kept %v, want %s", got, want)
	}
}

func TestAKeptRunThatFailedLeavesNoFile(t *testing.T) {
	scriptedDNSPerf(t, "#!/bin/sh\necho '> NOERROR shop.demo.test A 0.000100'\necho 'Error: interrupted' >&2\nexit 1\n")
	keep := t.TempDir()
	o := options{clients: 1, outstanding: 1, duration: time.Second, load: 1000, keep: keep, keepAs: "detour-round-1.txt"}
	if _, err := dnsperf(context.Background(), o, filepath.Join(t.TempDir(), "queries.txt"), "127.0.0.1:5300"); err == nil {
		t.Fatal("a dnsperf that exited 1 read as a run")
	}
	if kept, _ := os.ReadDir(keep); len(kept) != 0 {
		t.Errorf("a failed run left %v in the -keep directory, which would read as a run", kept)
	}
}
