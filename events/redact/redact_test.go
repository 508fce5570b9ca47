package redact_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/redact"
	"github.com/rs/zerolog"
)

func TestPasswordsInURLsAreRedacted(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"connect to nats at nats://dns:dns-demo@nats-1:4222: refused",
			"connect to nats at nats://dns:REDACTED@nats-1:4222: refused"},
		{"nats://a:pw1@n1:4222,nats://a:pw2@n2:4222", "nats://a:REDACTED@n1:4222,nats://a:REDACTED@n2:4222"},
		{`{"url":"https://hook:s3cr%40t@example.com/x"}`, `{"url":"https://hook:REDACTED@example.com/x"}`},
		{"tls://user:@host", "tls://user:REDACTED@host"},
		{"nats://dns:p@ss-word@nats-1:4222 down", "nats://dns:REDACTED@nats-1:4222 down"},
		{"nats://dns:it's-secret@nats-1:4222", "nats://dns:REDACTED@nats-1:4222"},
		{"nats://token@host:4222 and nats://host:4222", "nats://token@host:4222 and nats://host:4222"},
		{"mail user:pass@example.com is no URL", "mail user:pass@example.com is no URL"},
		{"http://127.0.0.1:8090/edges/a/stop", "http://127.0.0.1:8090/edges/a/stop"},
	} {
		if got := redact.String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestALoggerWritingThroughTheWriterNeverPrintsAPassword(t *testing.T) {
	var out bytes.Buffer
	for _, w := range []func() *zerolog.Logger{
		func() *zerolog.Logger { l := zerolog.New(redact.Writer(&out)); return &l },
		func() *zerolog.Logger {
			l := zerolog.New(redact.Writer(zerolog.ConsoleWriter{Out: &out, NoColor: true}))
			return &l
		},
	} {
		w().Warn().Str("url", "nats://dns:dns-demo@nats-1:4222").Msg("nats disconnected")
	}
	if strings.Contains(out.String(), "dns-demo") || strings.Count(out.String(), "nats://dns:REDACTED@nats-1:4222") != 2 {
		t.Errorf("log output:\n%s\nwant the URL twice with its password redacted", out.String())
	}
}

func TestControlsShowsEveryCharacterThatIsNotPrintableAsItsEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"dial tcp 10.0.0.1:443: connection refused", "dial tcp 10.0.0.1:443: connection refused"},
		{"shop/us-west/w1 → down: «timeout» ✓", "shop/us-west/w1 → down: «timeout» ✓"},
		{"valid for \x1b]52;c;aGk=\x07, not x", `valid for \x1b]52;c;aGk=\a, not x`},
		{"one\nforged line\r\tand a tab", `one\nforged line\r\tand a tab`},
		{"c1 \u009b2J and del \x7f", `c1 \u009b2J and del \x7f`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"not utf-8 \xff\x9b end", `not utf-8 \xff\x9b end`},
		{"a replacement character \ufffd stays", "a replacement character \ufffd stays"},
	} {
		if got := redact.Controls(c.in); got != c.want {
			t.Errorf("Controls(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
