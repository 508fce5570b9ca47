package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/miekg/dns"
)

// runHealth checks one thing a container's healthcheck needs and exits 0 when it answers: the
// images are FROM scratch, so there is no shell, curl or dig to do it.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	var dnsAddr, tcpAddr, httpURL string
	var timeout time.Duration
	fs.StringVar(&dnsAddr, "dns", "", "a DNS server's ip:port: healthy when it answers a query over UDP (any rcode)")
	fs.StringVar(&tcpAddr, "tcp", "", "an ip:port: healthy when it accepts a TCP connection (an edge's listener, a backend)")
	fs.StringVar(&httpURL, "http", "", "a URL: healthy when a GET answers 2xx (a role's /metrics, nats-server's /healthz)")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for the answer")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	set := 0
	for _, v := range []string{dnsAddr, tcpAddr, httpURL} {
		if v != "" {
			set++
		}
	}
	if set != 1 || fs.NArg() > 0 {
		return usageErr("want exactly one of --dns, --tcp and --http")
	}
	if timeout <= 0 {
		return usageErr("--timeout: must be positive, got %s", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch {
	case dnsAddr != "":
		err = checkDNS(ctx, dnsAddr)
	case tcpAddr != "":
		var c net.Conn
		if c, err = (&net.Dialer{}).DialContext(ctx, "tcp", tcpAddr); err == nil {
			_ = c.Close()
		}
	default:
		err = checkHTTP(ctx, httpURL)
	}
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	fmt.Fprintln(stdout, "healthy")
	return nil
}

// checkDNS asks addr for the root's SOA: an authoritative server answers REFUSED, which still
// shows that it serves.
func checkDNS(ctx context.Context, addr string) error {
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeSOA)
	_, _, err := (&dns.Client{}).ExchangeContext(ctx, q, addr)
	return err
}

func checkHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}
