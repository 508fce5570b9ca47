package source

import "testing"

func TestAMessageLeavesFromTheAddressTheServerListensOnWhenItListensOnOne(t *testing.T) {
	for _, c := range []struct{ listen, peer, want string }{
		{"127.0.0.2:53", "127.0.0.1:5300", "127.0.0.2"},
		{"127.0.0.2:53", "[::ffff:127.0.0.1]:5300", "127.0.0.2"},
		{"[2001:db8::53]:53", "[2001:db8::1]:53", "2001:db8::53"},
		{"[fe80::53%lo]:53", "[fe80::1%lo]:53", "fe80::53%lo"},
		{"192.0.2.53:53", "127.0.0.1:5300", "192.0.2.53"},
		// The routing table's choice: the wildcard, or a peer of the other family.
		{"0.0.0.0:53", "127.0.0.1:5300", ""},
		{"[::]:53", "[2001:db8::1]:53", ""},
		{"127.0.0.2:53", "[2001:db8::1]:53", ""},
		{"[2001:db8::53]:53", "192.0.2.1:53", ""},
		// Nor from an address no datagram leaves the host or the link from.
		{"127.0.0.1:5353", "192.0.2.53:53", ""},
		{"[::1]:5353", "[2001:db8::1]:53", ""},
		{"[fe80::53%lo]:53", "[2001:db8::1]:53", ""},
		// Nor from what is not an address.
		{"127.0.0.2:53", "primary.example:53", ""},
	} {
		got := ""
		if a, ok := For(c.listen, c.peer); ok {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("listening on %s, a message to %s: want it from %q, got %q", c.listen, c.peer, c.want, got)
		}
	}
}
