package events

import (
	"regexp"
	"testing"

	"github.com/nats-io/nats.go"
)

// tokenRE is the definition ValidToken implements.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func FuzzValidTokenAgreesWithItsRegexp(f *testing.F) {
	for _, s := range []string{"", "eu-west", "app_1", "a.b", "a b", "é", "*", ">", "A-Z_09", "\x00", "x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidToken(s), tokenRE.MatchString(s); got != want {
			t.Errorf("ValidToken(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}

func TestAWritersTokenIsItsNATSUserElseItsNameMadeAToken(t *testing.T) {
	user := &nats.Conn{Opts: nats.Options{InboxPrefix: InboxPrefix("dns-1")}}
	shared := &nats.Conn{Opts: nats.Options{InboxPrefix: "_INBOX"}}
	for _, c := range []struct {
		name string
		nc   *nats.Conn
		as   string
		want string
	}{
		{"the user, whatever the name", user, "ns1.example.com", "dns-1"},
		{"no user: the name", shared, "dns-2", "dns-2"},
		{"no user: a host name", shared, "ns1.example.com", "ns1_example_com"},
		{"no connection", nil, "dns 3*", "dns_3_"},
		{"no name", nil, "", "_"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := WriterToken(c.nc, c.as)
			if got != c.want {
				t.Errorf("WriterToken(%q) = %q, want %q", c.as, got, c.want)
			}
			if !ValidToken(got) {
				t.Errorf("WriterToken(%q) = %q: not a subject token", c.as, got)
			}
		})
	}
	if got, want := ZoneSubject("demo.test.", "dns-1"), "detour.dns.demo_test.dns-1"; got != want {
		t.Errorf("ZoneSubject = %q, want %q", got, want)
	}
}
