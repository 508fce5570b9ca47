package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	var server string
	var watch bool
	var every time.Duration
	fs.StringVar(&server, "server", "127.0.0.1:5353", "DNS server to ask")
	fs.BoolVar(&watch, "watch", false, "keep asking and print a line each time the answer changes")
	fs.DurationVar(&every, "every", 200*time.Millisecond, "how often to ask with --watch")
	if err := parseInterspersed(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usageErr("want NAME [TYPE]")
	}
	qtype := dns.TypeA
	if fs.NArg() == 2 {
		t, ok := dns.StringToType[strings.ToUpper(fs.Arg(1))]
		if !ok {
			return usageErr("TYPE: unknown record type %q", fs.Arg(1))
		}
		qtype = t
	}
	if every <= 0 {
		return usageErr("--every: must be positive")
	}
	if err := checkHostPort("--server", server); err != nil {
		return err
	}
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(fs.Arg(0)), qtype)
	m.RecursionDesired = false
	if !watch {
		line, err := ask(ctx, c, m, server)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, line)
		return nil
	}
	last := ""
	for {
		// An answer goes to stdout and a failure to stderr, each printed when it differs from
		// the last line; a failure's text holds no port or id that changes between queries.
		line, err := ask(ctx, c, m, server)
		out := stdout
		if err != nil {
			// The query's read deadline is ctx's: it may expire a moment before ctx says so.
			if d, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(d) {
				return nil
			}
			line, out = "error: "+err.Error(), stderr
		}
		if line != last {
			fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05.000"), line)
			last = line
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// ask returns the answer as one line: the rcode and the sorted record data.
func ask(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (string, error) {
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return "", queryError(server, err)
	}
	var data []string
	for _, rr := range r.Answer {
		data = append(data, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	sort.Strings(data)
	if len(data) == 0 {
		return dns.RcodeToString[r.Rcode] + " (no records)", nil
	}
	return dns.RcodeToString[r.Rcode] + " " + strings.Join(data, " "), nil
}

// queryError says why server gave no answer, without the query's random source port.
func queryError(server string, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer from %s within 1s", server)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s refused the query: no DNS server listens there", server)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return fmt.Errorf("ask %s: %s: %w", server, oe.Op, oe.Err)
	}
	return fmt.Errorf("ask %s: %w", server, err)
}
