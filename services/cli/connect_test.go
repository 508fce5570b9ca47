package cli

import (
	"testing"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestARoleReceivesItsRepliesUnderTheInboxPrefixOfTheUserItsURLNames(t *testing.T) {
	addr := eventstest.ClosedPort(t) // nothing answers: the role connects in the background
	for _, c := range []struct{ url, want string }{
		{"nats://edge-west:edge-west-demo@" + addr, "_INBOX_edge-west"},
		{"nats://" + addr + ",nats://dns:dns-demo@" + addr, "_INBOX_dns"},
		{addr, "_INBOX"},
		{"nats://a.b:pw@" + addr, "_INBOX"},
	} {
		js, err := connectRole(c.url, "test", &refusals{}, zerolog.Nop())
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if got := js.Conn().Opts.InboxPrefix; got != c.want {
			t.Errorf("%s: inbox prefix %q, want %q", c.url, got, c.want)
		}
		js.Conn().Close()
	}
}
