package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/prober/benchenv"
)

// blackboxConfig gives blackbox_exporter the same checks Detour runs: a TCP connect and an HTTP
// GET expecting a 2xx, both with a 500 ms timeout, IPv4, no redirects followed.
const blackboxConfig = `modules:
  tcp_connect:
    prober: tcp
    timeout: 500ms
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  http_2xx:
    prober: http
    timeout: 500ms
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      no_follow_redirects: true
`

// runBlackbox starts blackbox_exporter on loopback and drives it at the rate Detour probes at:
// one /probe request per endpoint per interval, at the same instants.
func runBlackbox(s settings, dir string, targets []prober.Target, keys []string, jitter time.Duration) (result, error) {
	cfgFile := filepath.Join(dir, "blackbox.yml")
	if err := os.WriteFile(cfgFile, []byte(blackboxConfig), 0o600); err != nil {
		return result{}, fmt.Errorf("write blackbox configuration: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(s.blackbox, "--config.file="+cfgFile, "--web.listen-address="+addr, "--log.level=error")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	benchenv.DiesWithThis(cmd)
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start blackbox_exporter: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	// Up to 1024 requests in flight, as a Prometheus server scraping many targets would have.
	// A request not answered within the interval fails, as a Prometheus scrape would time out.
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024},
		Timeout: s.interval}
	if err := waitReady(client, "http://"+addr+"/-/healthy"); err != nil {
		return result{}, err
	}

	start := time.Now()
	from, to := measured(s, start)
	tl := newTally(keys, s.interval, jitter, s.onTime, from, to)
	stop := windowStart(to, s.interval)
	var wg sync.WaitGroup
	for i, t := range targets {
		probeURL := "http://" + addr + "/probe?" + probeQuery(t)
		wg.Go(func() { drive(client, probeURL, t.Check.Type, keys[i], s.interval, jitter, stop, tl) })
	}
	r, err := sample(cmd.Process.Pid, s, from, to)
	wg.Wait()
	if err != nil {
		return result{}, err
	}
	r.name, r.sum = "blackbox_exporter", tl.summary()
	return r, nil
}

func probeQuery(t prober.Target) string {
	v := url.Values{}
	switch t.Check.Type {
	case config.CheckHTTP:
		v.Set("module", "http_2xx")
		v.Set("target", "http://"+t.Dial.String()+t.Check.Path)
	default:
		v.Set("module", "tcp_connect")
		v.Set("target", t.Dial.String())
	}
	return v.Encode()
}

// drive requests one endpoint's probe at each of its instants until stop.
func drive(client *http.Client, probeURL, check, key string, interval, jitter time.Duration, stop time.Time, tl *tally) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		_, at := prober.NextSlot(key, interval, jitter, time.Now())
		if !at.Before(stop) {
			return
		}
		waitUntil(at)
		inflight.Go(func() {
			sent := time.Now()
			resp, err := client.Get(probeURL)
			if err != nil {
				tl.record(key, sent, false, check+" request")
				tl.note(err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ok := err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), "\nprobe_success 1\n")
			tl.record(key, sent, ok, check+" probe_failed")
		})
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitReady(client *http.Client, u string) error {
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("blackbox_exporter not ready at %s within 15s: %v", u, err)
		}
	}
	return nil
}
