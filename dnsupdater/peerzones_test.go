package dnsupdater

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/logs"
	"github.com/rs/zerolog"
)

// TestRecordsOfZonesNotServedAreKeptWithinABound: any DNS server's credentials may record a
// version of any zone on its own subjects, a million zones within the DNS stream's bound, and
// every other DNS server keeps the records of zones it does not serve (a reload may add one,
// whose first version must pass them). It keeps a bounded number of such zones, says so once,
// and still counts the records of the zones it serves.
func TestRecordsOfZonesNotServedAreKeptWithinABound(t *testing.T) {
	out := &eventstest.Logs{}
	s := &Server{peerSeen: map[peerKey]peerVersion{}, peerHeld: map[string]bool{}, proj: &projector{peers: newPeerClock("dns-test/id")},
		log: zerolog.New(out), peerRefusals: logs.NewRepeats(peerRefusalWindow)}
	s.table.Store(&table{serials: map[string]uint32{"demo.test.": 1}})
	now := time.Now()
	const forged = 20000
	for i := range forged {
		name := fmt.Sprintf("z%d.forged.", i)
		s.peerSeen[peerKey{name, "dns-other/x"}] = peerVersion{zone: name, serial: 1, digest: "d", server: "dns-other/x", writer: "dns-other"}
	}
	s.restamps(now)
	s.peerSeen[peerKey{"demo.test.", "dns-other/x"}] = peerVersion{zone: "demo.test.", serial: 7, digest: "d", server: "dns-other/x", writer: "dns-other"}
	s.restamps(now)
	if n := len(s.proj.peers.highest); n >= forged {
		t.Errorf("the clock holds %d zones after records of %d zones not served, want fewer", n, forged)
	}
	if floor, ok := s.proj.peers.floor("demo.test."); !ok || floor != 7 {
		t.Errorf("demo.test.'s highest serial another server recorded = %d (%v), want 7: a zone served counts whatever the others", floor, ok)
	}
	if got := strings.Count(out.String(), "zones this server does not serve"); got != 1 {
		t.Errorf("%d log lines about the zones not served, want 1:\n%.2000s", got, out.String())
	}
}
