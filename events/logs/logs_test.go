package logs

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestRepeatsLetOneLinePerWindowThroughAndCountTheRest(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	r := NewRepeats(10 * time.Second)
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	r.now = func() time.Time { return now }
	for i := 0; i < 38; i++ {
		r.Gate(log.Warn(), "malformed").Int("i", i).Msg("malformed probe message skipped")
		now = now.Add(100 * time.Millisecond)
	}
	r.Gate(log.Warn(), "other").Msg("another line")
	now = now.Add(10 * time.Second)
	r.Gate(log.Warn(), "malformed").Int("i", 99).Msg("malformed probe message skipped")
	want := `{"level":"warn","i":0,"message":"malformed probe message skipped"}
{"level":"warn","message":"another line"}
{"level":"warn","more":37,"in_last":"10s","i":99,"message":"malformed probe message skipped"}
`
	if buf.String() != want {
		t.Errorf("logged:\n%swant:\n%s", buf.String(), want)
	}
}

func TestRepeatsIgnoreADisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(&buf).Level(zerolog.ErrorLevel)
	r := NewRepeats(time.Second)
	r.Gate(log.Warn(), "k").Msg("dropped by level")
	r.Gate(log.Error(), "k").Msg("kept")
	if got := strings.Count(buf.String(), "\n"); got != 1 {
		t.Errorf("logged %d lines, want 1:\n%s", got, buf.String())
	}
}

func TestAFileGetsJSONWithoutColoursAndDurationsInGoSyntax(t *testing.T) {
	for _, format := range []string{FormatAuto, FormatJSON} {
		var buf bytes.Buffer // not a terminal, like a file or a pipe
		log, err := New(&buf, format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Dur("member_ttl", 500*time.Millisecond).Msg("started")
		if strings.Contains(buf.String(), "\x1b[") || !strings.Contains(buf.String(), `"member_ttl":"500ms"`) ||
			!regexp.MustCompile(`"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`).MatchString(buf.String()) {
			t.Errorf("--log-format %s to a pipe wrote %q, want JSON with member_ttl 500ms, the time to the millisecond and no escape codes", format, buf.String())
		}
	}
}

func TestConsoleFormatToAPipeHasNoColours(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, FormatConsole, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Dur("ttl", 5*time.Minute).Msg("peer edge resolved")
	if s := buf.String(); strings.Contains(s, "\x1b[") || !strings.Contains(s, "ttl=5m0s") || !strings.Contains(s, "peer edge resolved") {
		t.Errorf("console log to a pipe = %q, want plain text with ttl=5m0s", s)
	}
}

func TestBadFormatsAndLevelsAreRefused(t *testing.T) {
	for _, c := range [][2]string{{"xml", "info"}, {"auto", "loud"}, {"json", ""}} {
		if _, err := New(&bytes.Buffer{}, c[0], c[1]); err == nil {
			t.Errorf("New(format %q, level %q) accepted", c[0], c[1])
		}
	}
}
