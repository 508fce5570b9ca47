package redact_test

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events/redact"
)

// FuzzStringHidesEveryPassword checks that a password put in a URL never survives, whatever
// surrounds it, and that redacting twice changes nothing more.
func FuzzStringHidesEveryPassword(f *testing.F) {
	f.Add("connect to ", "nats", "dns", "dns-demo", "nats-1:4222", ": refused")
	f.Add("", "https", "hook", "s3cr%40t", "example.com/x", `"}`)
	f.Fuzz(func(t *testing.T, before, scheme, user, password, host, after string) {
		s := before + scheme + "://" + user + ":" + password + "@" + host + after
		got := redact.String(s)
		if redact.String(got) != got {
			t.Errorf("String is not idempotent on %q: %q", s, got)
		}
		plain := func(x string) bool { return !strings.ContainsAny(x, ":/@ \t\n\r\v\f\"'") }
		// A URL's password may hold ' and, unencoded, @ (url.Parse splits at the last @).
		plainPassword := !strings.ContainsAny(password, ":/ \t\n\r\v\f\"")
		schemeOK := scheme != "" && strings.IndexFunc(scheme, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '.' || r == '-')
		}) < 0 && (scheme[0] >= 'a' && scheme[0] <= 'z' || scheme[0] >= 'A' && scheme[0] <= 'Z')
		if schemeOK && plain(user) && plainPassword && len(password) >= 6 && !strings.Contains(before+host+after+user+scheme, password) &&
			strings.Contains(got, password) {
			t.Errorf("String(%q) = %q still holds the password", s, got)
		}
	})
}
