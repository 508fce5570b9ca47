package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

func TestQueryWatchPrintsAFailureOnceNotOnEveryQuery(t *testing.T) {
	addr := eventstest.RefusedUDP(t) // every query fails the same way, from a new source port
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var stdout, stderr strings.Builder
	err := runQuery(ctx, []string{"--server", addr, "--every", "10ms", "--watch", "shop.demo.test"}, &stdout, &stderr)
	if err != nil || stdout.String() != "" {
		t.Fatalf("query --watch: err %v, stdout %q; want nil and nothing on stdout", err, stdout.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "error: "+addr+" refused the query: no DNS server listens there") {
		t.Errorf("stderr:\n%s\nwant exactly one line saying %s refused the query", stderr.String(), addr)
	}
}
