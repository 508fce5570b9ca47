package cli

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestQueryWatchPrintsAFailureOnceNotOnEveryQuery(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing answers there: every query fails the same way, from a new source port
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var stdout, stderr strings.Builder
	err = runQuery(ctx, []string{"--server", addr, "--every", "10ms", "--watch", "shop.demo.test"}, &stdout, &stderr)
	if err != nil || stdout.String() != "" {
		t.Fatalf("query --watch: err %v, stdout %q; want nil and nothing on stdout", err, stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "error: "+addr+" refused the query: no DNS server listens there") {
		t.Errorf("stderr:\n%s\nwant exactly one line saying %s refused the query", stderr.String(), addr)
	}
}
