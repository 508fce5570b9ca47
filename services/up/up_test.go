package up_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/internal/stacktest"
	"github.com/detourdev/detour/services/up"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const (
	interval = 250 * time.Millisecond
	fall     = 3
	rise     = 2
)

// slice starts two backends and Detour in process with a failover app over them.
func slice(t *testing.T, opts ...func(*up.Options)) (*up.Stack, *demo.Backend, *demo.Backend) {
	t.Helper()
	west, err := demo.StartBackend("west", "127.0.0.11:0")
	if err != nil {
		t.Fatal(err)
	}
	east, err := demo.StartBackend("east", "127.0.0.12:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = east.Close() })
	doc := fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ttl: 5
    policy: failover
    check: {type: http, path: /healthz, interval: %s, timeout: 200ms, fall: %d, rise: %d}
    pools:
      - name: west
        endpoints: [{address: %q}]
      - name: east
        endpoints: [{address: %q}]
`, interval, fall, rise, west.Addr(), east.Addr())
	path := filepath.Join(t.TempDir(), "detour.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	o := up.Options{
		ConfigPath: path, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
	for _, f := range opts {
		f(&o)
	}
	st := startStack(t, o)
	return st, west, east
}

// startStack starts Detour in process and stops it, checking it stopped cleanly, when the test
// ends.
func startStack(t *testing.T, o up.Options) *up.Stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := up.Start(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := st.Wait(); err != nil {
			t.Errorf("stack stopped with %v", err)
		}
	})
	return st
}

// answer asks the stack's DNS server for shop.demo.test A over UDP and returns the addresses.
func answer(t *testing.T, addr string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("shop.demo.test.", dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, addr)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }

// waitAnswer polls until the answer is exactly want and returns how long that took.
func waitAnswer(t *testing.T, st *up.Stack, want string, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	var got []string
	eventstest.Eventually(t, within, func() bool {
		got = answer(t, st.DNSAddr)
		return slices.Equal(got, []string{want})
	}, "%s: answer is %v, want [%s]", what, &got, want)
	return time.Since(start)
}

func TestTheAnswerFailsOverToTheBackupPoolAndBack(t *testing.T) {
	st, west, east := slice(t)
	westIP, eastIP := host(west.Addr()), host(east.Addr())
	waitAnswer(t, st, westIP, 5*time.Second, "at start")

	// Garbage on Detour's subjects and in DNS packets must not disturb anything that follows.
	_, js := stacktest.Connect(t, st)
	sendGarbage(t, js, st.DNSAddr)

	west.Close()
	took := waitAnswer(t, st, eastIP, interval*fall+time.Second, "after the west backend died")
	t.Logf("failover took %s (bound %s)", took, interval*fall+time.Second)

	west, err := demo.StartBackend("west", west.Addr())
	if err != nil {
		t.Fatalf("restart west on its old address: %v", err)
	}
	t.Cleanup(func() { _ = west.Close() })
	took = waitAnswer(t, st, westIP, interval*rise+time.Second, "after the west backend came back")
	t.Logf("failback took %s (bound %s)", took, interval*rise+time.Second)

	// The STATE stream holds exactly the transitions that happened, in order, once each. The
	// answer follows west's endpoint transition; its pool's is appended right after, so wait for it.
	var got map[string][]string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = transitions(t, js)
		pool := got["pool west"]
		return len(pool) > 0 && pool[len(pool)-1] == "up"
	}, "STATE holds %v, want west's pool transitions to end with up", &got)
	wantWest := []string{"down", "up"}
	if len(got["endpoint west"]) == 3 {
		// The decider may record the first decision (unknown → up) too.
		wantWest = []string{"up", "down", "up"}
	}
	if !slices.Equal(got["endpoint west"], wantWest) {
		t.Errorf("west endpoint transitions = %v, want %v", got["endpoint west"], wantWest)
	}
	if !slices.Equal(got["pool west"], wantWest) {
		t.Errorf("west pool transitions = %v, want %v", got["pool west"], wantWest)
	}
	for _, k := range []string{"endpoint east", "pool east"} {
		if len(got[k]) > 1 || (len(got[k]) == 1 && got[k][0] != "up") {
			t.Errorf("%s transitions = %v, want none or the first decision [up]", k, got[k])
		}
	}
}

// sendGarbage publishes malformed messages on the subjects the decider and the DNS server
// consume, and malformed packets to the DNS server.
func sendGarbage(t *testing.T, js jetstream.JetStream, dnsAddr string) {
	t.Helper()
	ctx := context.Background()
	for _, subj := range []string{
		events.ProbeSubject("local", "shop", "west", "nope"),
		events.ProbeSubject("local", "shop", "west", events.AddressToken("127.0.0.11:1")),
		"detour.state.endpoint.shop.west.garbage",
		"detour.state.pool.shop.west",
	} {
		for _, body := range []string{"", "garbage", `{"type":"detour.endpoint.down.v1"}`,
			`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"ok":"maybe"}}`} {
			m := nats.NewMsg(subj)
			m.Data = []byte(body)
			// The STATE subjects belong to the decider; a stray writer is what this simulates.
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatalf("publish garbage to %s: %v", subj, err)
			}
		}
	}
	for _, pkt := range [][]byte{{}, {0x12}, []byte("not a dns message at all"), make([]byte, 12), {0, 1, 0x80, 0, 0, 5, 0, 0, 0, 0, 0, 0}} {
		c, err := net.Dial("udp", dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(pkt)
		_ = c.Close()
	}
}

// transitions reads the STATE stream and returns, per "endpoint NAME" or "pool NAME", the
// statuses recorded in order. It fails the test on a duplicated event id.
func transitions(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, events.StreamState, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	ids := map[string]bool{}
	for range info.State.Msgs {
		m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("read STATE: %v", err)
		}
		e, err := events.Decode(m.Data())
		if err != nil {
			continue // the garbage this test published
		}
		var tr events.Transition
		if e.Payload(&tr) != nil || tr.To == "" {
			continue
		}
		if ids[e.ID] {
			t.Errorf("event %s appears twice in STATE", e.ID)
		}
		ids[e.ID] = true
		kind, name := "pool", tr.Pool
		if strings.HasPrefix(m.Subject(), "detour.state.endpoint.") {
			kind = "endpoint"
		}
		out[kind+" "+name] = append(out[kind+" "+name], string(tr.To))
	}
	return out
}

func TestASecondUpOnTheSameDataDirectoryIsRefusedBeforeItWritesThere(t *testing.T) {
	// Before, it ran a second JetStream server on the first's files and stored its configuration
	// there before the DNS server's lock refused it: the first found that version in its
	// history when it started again.
	dir := t.TempDir()
	options := func(addr string) up.Options {
		doc := "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n" +
			"    pools: [{name: main, endpoints: [{address: \"" + addr + "\"}]}]\n"
		path := filepath.Join(t.TempDir(), "detour.yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return up.Options{ConfigPath: path, DNSAddr: "127.0.0.1:0", DataDir: dir, NATSPort: -1,
			Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	}
	first, second := options("127.0.0.1:8081"), options("127.0.0.1:8082")
	ctx, cancel := context.WithCancel(context.Background())
	st, err := up.Start(ctx, first)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	other, err := up.Start(context.Background(), second)
	if err == nil {
		_ = other.Wait()
		t.Error("a second detour up on the data directory of a running one started")
	} else if !strings.Contains(err.Error(), "in use by another detour up") {
		t.Errorf("a second detour up on the same data directory: %v, want it refused as in use by another detour up", err)
	}
	cancel()
	if err := st.Wait(); err != nil {
		t.Fatal(err)
	}

	again := startStack(t, first)
	_, js := stacktest.Connect(t, again)
	versions, err := config.History(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(second.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(doc)
	for _, v := range versions {
		if v.SHA256 == hex.EncodeToString(sum[:]) {
			t.Errorf("version %d, by %s, is the configuration of the refused second detour up", v.Number, v.By)
		}
	}
}

func TestARoleThatFailsWhileUpStartsIsWhatUpReturnsAtOnce(t *testing.T) {
	// Before, Start waited 5 s for the DNS server the failure had stopped, then blamed it.
	doc := "zones: [{name: demo.test}]\nregions: [us-west]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n" +
		"    pools: [{name: main, endpoints: [{address: \"127.0.0.1:1\"}]}]\n"
	path := filepath.Join(t.TempDir(), "detour.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// A prober of a region the configuration does not count fails as it starts.
	st, err := up.Start(context.Background(), up.Options{ConfigPath: path, DNSAddr: "127.0.0.1:0", DataDir: t.TempDir(), NATSPort: -1,
		Regions: []string{"eu"}, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)})
	if err == nil {
		err = st.Wait()
	}
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), "prober eu") || took > 3*time.Second {
		t.Errorf("after %s: %v; want at once the prober's failure", took.Round(time.Millisecond), err)
	}
}

func TestARestartWithAnUnchangedConfigurationStoresNoNewVersion(t *testing.T) {
	// Before, every start stored the file as a new version: restarts pushed real history out
	// of the versions CONFIG keeps, and a rollback target with it.
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "detour.yaml")
	write := func(addr string) {
		doc := "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n" +
			"    pools: [{name: main, endpoints: [{address: \"" + addr + "\"}]}]\n"
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := up.Options{ConfigPath: path, DNSAddr: "127.0.0.1:0", DataDir: dir, NATSPort: -1,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	run := func() []config.Version {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		st, err := up.Start(ctx, o)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_, js := stacktest.Connect(t, st)
		versions, err := config.History(context.Background(), js)
		cancel()
		if werr := st.Wait(); werr != nil {
			t.Fatal(werr)
		}
		if err != nil {
			t.Fatal(err)
		}
		return versions
	}
	write("127.0.0.1:8081")
	if got := run(); len(got) != 1 {
		t.Fatalf("after the first start: %d versions, want 1", len(got))
	}
	if got := run(); len(got) != 1 {
		t.Errorf("after a restart with the same file: %d versions, want 1 (%+v)", len(got), got)
	}
	write("127.0.0.1:8082")
	if got := run(); len(got) != 2 {
		t.Errorf("after a restart with a changed file: %d versions, want 2", len(got))
	}
}
