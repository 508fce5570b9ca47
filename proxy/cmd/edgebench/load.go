package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// result is one target's measurement.
type result struct {
	name     string
	requests int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

// rps is the successful requests per second.
func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// summarize computes a result from every request's latency; lats is sorted in place.
func summarize(name string, lats []time.Duration, errors int, elapsed time.Duration) result {
	slices.Sort(lats)
	return result{name: name, requests: len(lats), errors: errors, elapsed: elapsed,
		p50: percentile(lats, 0.50), p99: percentile(lats, 0.99)}
}

// percentile returns the nearest-rank q-quantile of sorted latencies, 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// measure runs conns closed-loop keep-alive connections against addr: warmup uncounted, then
// duration counted. A failed request is counted and its connection re-opened.
func measure(ctx context.Context, name, addr string, conns int, warmup, duration time.Duration) result {
	start := time.Now()
	countFrom, end := start.Add(warmup), start.Add(warmup+duration)
	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			lats, errs := worker(ctx, addr, countFrom, end)
			mu.Lock()
			all = append(all, lats...)
			errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(name, all, errors, duration)
}

// measureRate sends rate requests/s over conns connections, each on its own evenly spaced
// schedule. Every latency counts from when the request was due, so a slow answer also counts
// against the requests that waited behind it.
func measureRate(ctx context.Context, name, addr string, conns, rate int, warmup, duration time.Duration) result {
	start := time.Now()
	countFrom, end := start.Add(warmup), start.Add(warmup+duration)
	period := time.Duration(conns) * time.Second / time.Duration(rate)
	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	var wg sync.WaitGroup
	for i := range conns {
		first := start.Add(time.Duration(i) * period / time.Duration(conns))
		wg.Go(func() {
			lats, errs := pacedWorker(ctx, addr, first, period, countFrom, end)
			mu.Lock()
			all = append(all, lats...)
			errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(name, all, errors, duration)
}

func pacedWorker(ctx context.Context, addr string, due time.Time, period time.Duration, countFrom, end time.Time) ([]time.Duration, int) {
	lats := make([]time.Duration, 0, 1<<12)
	errs := 0
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for ; ctx.Err() == nil && due.Before(end); due = due.Add(period) {
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				errs++
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 16<<10)
		}
		closed, err := roundTrip(conn, br)
		lat := time.Since(due)
		if err != nil || closed {
			_ = conn.Close()
			conn = nil
		}
		if due.Before(countFrom) {
			continue
		}
		if err != nil {
			errs++
			continue
		}
		lats = append(lats, lat)
	}
	return lats, errs
}

var request = []byte("GET / HTTP/1.1\r\nHost: app.bench.test\r\nUser-Agent: edgebench\r\n\r\n")

func worker(ctx context.Context, addr string, countFrom, end time.Time) ([]time.Duration, int) {
	lats := make([]time.Duration, 0, 1<<16)
	errs := 0
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	for ctx.Err() == nil {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		if conn == nil {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				errs++
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 16<<10)
			t0 = time.Now()
		}
		closed, err := roundTrip(conn, br)
		if closed && err == nil {
			// The server ended the keep-alive connection after answering: open a new one.
			_ = conn.Close()
			conn = nil
		}
		if t0.Before(countFrom) {
			if err != nil {
				_ = conn.Close()
				conn = nil
			}
			continue
		}
		if err != nil {
			errs++
			_ = conn.Close()
			conn = nil
			continue
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, errs
}

// roundTrip sends one request on conn and reads the answer; closed reports that the server
// closes the connection after it.
func roundTrip(conn net.Conn, br *bufio.Reader) (closed bool, err error) {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(request); err != nil {
		return true, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return true, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return true, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Close, fmt.Errorf("status %s", resp.Status)
	}
	return resp.Close, nil
}
