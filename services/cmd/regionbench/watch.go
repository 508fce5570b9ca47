package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
	"github.com/miekg/dns"
)

// name is app i's DNS name.
func name(i int) string { return fmt.Sprintf("app%d.region.test.", i) }

// watchRate is how many queries a second the watcher sends at most: each name still pending
// is asked once per pass, so a pass over 10,000 names takes two seconds, and one over the last
// ten names 2 ms. The times the DNS server recorded each zone version are the precise ones;
// the watcher shows a client saw them, up to a pass later.
const watchRate = 5000

// passFloor is the shortest pass: the watcher never spins on an empty or tiny pass.
const passFloor = time.Millisecond

// watch asks the DNS server for every app's A record until each answers want(i), pipelined
// over one UDP socket, and returns when each first did (zero where it never did before ctx
// ended). Query ids are app indexes, so n must be at most 65,536.
func watch(ctx context.Context, n int, want func(int) netip.Addr) ([]time.Time, error) {
	conn, err := net.Dial("udp", dnsAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	queries := make([][]byte, n)
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(name(i), dns.TypeA)
		m.Id = uint16(i)
		if queries[i], err = m.Pack(); err != nil {
			return nil, err
		}
	}
	moved := make([]atomic.Int64, n)
	var left atomic.Int64
	left.Store(int64(n))
	go func() {
		buf := make([]byte, 1500)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			at := time.Now().UnixNano()
			var m dns.Msg
			if m.Unpack(buf[:k]) != nil || int(m.Id) >= n || len(m.Answer) != 1 {
				continue
			}
			a, ok := m.Answer[0].(*dns.A)
			if !ok {
				continue
			}
			if ip, _ := netip.AddrFromSlice(a.A); ip.Unmap() == want(int(m.Id)) && moved[m.Id].CompareAndSwap(0, at) {
				left.Add(-1)
			}
		}
	}()
	const chunk = 200
	for left.Load() > 0 && ctx.Err() == nil {
		pass := time.Now()
		sent := 0
		for i := range n {
			if moved[i].Load() != 0 {
				continue
			}
			_, _ = conn.Write(queries[i])
			if sent++; sent%chunk == 0 {
				// Pace: chunk queries per chunk/watchRate.
				if d := time.Until(pass.Add(time.Duration(sent) * time.Second / watchRate)); d > 0 {
					time.Sleep(d)
				}
			}
		}
		// A pass lasts as long as its queries take at watchRate; a name asked again before its
		// answer came is counted once.
		time.Sleep(max(passFloor, time.Until(pass.Add(time.Duration(sent)*time.Second/watchRate))))
	}
	out := make([]time.Time, n)
	for i := range moved {
		if ns := moved[i].Load(); ns != 0 {
			out[i] = time.Unix(0, ns)
		}
	}
	return out, nil
}

// rateSample is one of dnsperf's periodic statistics: the queries per second answered in the
// interval that ended at end.
type rateSample struct {
	end time.Time
	qps float64
}

// dnsperfRun is one run of dnsperf against the DNS server, in a process of its own.
type dnsperfRun struct {
	p       *proc
	samples []rateSample
	done    chan error
}

// dnsperf runs dnsperf against the DNS server for d at the offered rate, printing the rate
// answered every second. A query unanswered for a second counts as lost (-t 1), so a few lost
// datagrams do not hold its outstanding queries for dnsperf's default 5 s.
func (st *stack) dnsperf(d time.Duration, rate int) (*dnsperfRun, error) {
	queries := st.dir + "/queries.txt"
	if _, err := os.Stat(queries); err != nil {
		var b strings.Builder
		for i := range st.n {
			fmt.Fprintf(&b, "%s A\n", name(i))
		}
		if err := os.WriteFile(queries, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
	}
	host, port, _ := net.SplitHostPort(dnsAddr)
	args := []string{"-s", host, "-p", port, "-d", queries, "-l", strconv.Itoa(int(d.Seconds())), "-c", "2", "-q", "500", "-t", "1", "-S", "1"}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate))
	}
	cmd := exec.Command("dnsperf", args...)
	benchenv.DiesWithThis(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dnsperf: %w", err)
	}
	r := &dnsperfRun{p: &proc{role: "dnsperf (load)", name: "dnsperf", cmd: cmd}, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := parseSample(sc.Text()); ok {
				r.samples = append(r.samples, s)
			}
		}
		r.done <- cmd.Wait()
	}()
	return r, nil
}

// parseSample reads one line of dnsperf -S: "<unix time>: <qps>".
func parseSample(line string) (rateSample, bool) {
	ts, qps, ok := strings.Cut(strings.TrimSpace(line), ": ")
	if !ok {
		return rateSample{}, false
	}
	t, err1 := strconv.ParseFloat(ts, 64)
	q, err2 := strconv.ParseFloat(strings.Fields(qps + " ")[0], 64)
	if err1 != nil || err2 != nil || t < 1e9 {
		return rateSample{}, false
	}
	return rateSample{end: time.Unix(0, int64(t*1e9)), qps: q}, true
}

// wait waits for dnsperf to end and returns the mean rate of the samples whose second
// overlaps [from, to] (all of them when from is zero), weighted by the overlap.
func (r *dnsperfRun) wait(from, to time.Time) (float64, error) {
	if err := <-r.done; err != nil {
		return 0, fmt.Errorf("dnsperf: %w", err)
	}
	var sum, weight float64
	for k, s := range r.samples {
		start := s.end.Add(-time.Second)
		if k > 0 {
			start = r.samples[k-1].end
		}
		lo, hi := start, s.end
		if !from.IsZero() {
			lo, hi = later(lo, from), earlier(hi, to)
		}
		if w := hi.Sub(lo).Seconds(); w > 0 {
			sum += s.qps * w
			weight += w
		}
	}
	if weight == 0 {
		return 0, fmt.Errorf("dnsperf printed no rate for the window (%d samples)", len(r.samples))
	}
	return sum / weight, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
