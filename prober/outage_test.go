package prober

import (
	"bufio"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// memberLog keeps the members each prober last logged.
type memberLog struct{ eventstest.Logs }

// members returns the members prober last logged, and how many times it logged them.
func (l *memberLog) members(prober string) ([]string, int) {
	var last []string
	n := 0
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var line struct {
			Prober  string   `json:"prober"`
			Message string   `json:"message"`
			Members []string `json:"members"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Prober == prober && line.Message == "prober members changed" {
			last, n = line.Members, n+1
		}
	}
	return last, n
}

func TestTheMembershipWatchSurvivesAFullJetStreamOutage(t *testing.T) {
	srv := eventstest.StartWith(t, eventstest.Options{Files: true})
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 300ms, timeout: 100ms}
    pools:
      - name: west
        endpoints: [{name: a, address: "127.0.0.1:9"}]
`)
	var logs memberLog
	for _, name := range []string{"p1", "p2"} {
		js, err := jetstream.New(eventstest.ConnectRetrying(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		startWorker(t, Options{JS: js, Config: cfg, Region: "us-west", Name: name, Log: zerolog.New(&logs),
			Heartbeat: 100 * time.Millisecond, MemberTTL: 300 * time.Millisecond})
	}
	both := func() bool { m, _ := logs.members("p1"); return slices.Equal(m, []string{"p1", "p2"}) }
	eventstest.Eventually(t, 5*time.Second, both, "p1 to see p2")

	// Every node of JetStream is gone for a second, three times the records' TTL: each prober's
	// record of the other expires.
	_, before := logs.members("p1")
	srv.Stop()
	time.Sleep(time.Second) // the outage itself
	srv.Restart(t)
	eventstest.Eventually(t, 3*time.Second, func() bool { _, n := logs.members("p1"); return n >= before+2 && both() },
		"p1 to lose sight of p2, then see it again within 2 s of JetStream's return (plus a heartbeat)")
}
