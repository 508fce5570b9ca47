package decider

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestAFloodOfForeignResultsCostsOneLogLinePerTenSeconds(t *testing.T) {
	var out strings.Builder
	log := zerolog.New(&out)
	var f foreignLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		f.drop(&log, t0.Add(time.Duration(i)*15*time.Millisecond), "mars", "mars") // 15 s of results
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"dropped":1,`) || !strings.Contains(lines[1], `"dropped":667,`) {
		t.Errorf("log:\n%s\nwant two lines: the first result, then the 667 dropped in the next 10 s", out.String())
	}
}
