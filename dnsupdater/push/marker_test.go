package push

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/state"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// testStream is when the tests' STATE stream was created.
var testStream = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const markerName = "_detour-state.demo.test."

// at returns d as of position seq of the stream created at created.
func at(d Desired, seq uint64, created time.Time) Desired {
	d.State = Position{Seq: seq, Created: created}
	return d
}

// ask asks the server at addr over TCP, unsigned, and returns the data of the answer's records,
// sorted.
func ask(t *testing.T, addr, name, qtype string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.StringToType[qtype])
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("ask %s %s: %v", name, qtype, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == m.Question[0].Qtype {
			out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
	}
	slices.Sort(out)
	return out
}

// markerSays reports whether the primary's marker RRset is one marker, no claim, that holds
// every field of want ("seq=20", "server=dns-a").
func markerSays(t *testing.T, addr string, want ...string) bool {
	t.Helper()
	got := ask(t, addr, markerName, "TXT")
	if len(got) != 1 || !strings.HasPrefix(got[0], `"detour-state" `) {
		return false
	}
	for _, w := range want {
		if !strings.Contains(got[0], `"`+w+`"`) {
			return false
		}
	}
	return true
}

// startGate passes DNS messages over TCP between pushers and the primary at upstream, and returns
// its address. Before it passes on the nth UPDATE it calls before(n), which may block to order
// the UPDATEs of several pushers; after the primary answered it, after(n).
func startGate(t *testing.T, upstream string, before, after func(n int)) string {
	t.Helper()
	var mu sync.Mutex
	updates := 0
	return startRelay(t, upstream, func(m *dns.Msg) func() {
		if m.Opcode != dns.OpcodeUpdate {
			return nil
		}
		mu.Lock()
		updates++
		n := updates
		mu.Unlock()
		if before != nil {
			before(n)
		}
		if after == nil {
			return nil
		}
		return func() { after(n) }
	})
}

// startRelay passes DNS messages over TCP between pushers and the primary at upstream, and
// returns its address. It calls each with every message before passing it on, and the function
// each returns, if any, once the primary answered it.
func startRelay(t *testing.T, upstream string, each func(m *dns.Msg) func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	read := func(c net.Conn) ([]byte, error) {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return nil, err
		}
		b := make([]byte, 2+int(n))
		binary.BigEndian.PutUint16(b, n)
		_, err := io.ReadFull(c, b[2:])
		return b, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				for {
					q, err := read(c)
					if err != nil {
						return
					}
					var m dns.Msg
					var after func()
					if m.Unpack(q[2:]) == nil {
						after = each(&m)
					}
					if _, err := up.Write(q); err != nil {
						return
					}
					r, err := read(up)
					if err != nil {
						return
					}
					if after != nil {
						after()
					}
					if _, err := c.Write(r); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// startCountingRelay starts a relay to the primary at upstream, as startRelay, and returns its
// address and a function that counts the messages of opcode it has passed on.
func startCountingRelay(t *testing.T, upstream string, opcode int) (string, func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	relay := startRelay(t, upstream, func(m *dns.Msg) func() {
		if m.Opcode == opcode {
			mu.Lock()
			n++
			mu.Unlock()
		}
		return nil
	})
	return relay, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// await waits for ch to close, at most 10 s, or for the test to end.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-t.Context().Done(): // the test ended: a relay's goroutine must not report after it
	case <-time.After(10 * time.Second):
		t.Errorf("no %s within 10s", what)
	}
}

// pushers runs two pushers of demo.test to addr, one of the server dns-a and one of dns-b
// through push (nil: to addr), counting in m.
func pushers(t *testing.T, cfg *config.Config, m *metrics.Metrics, bPush *config.Push) (*Pusher, *Pusher) {
	t.Helper()
	push := *cfg.Zones[0].Push
	if bPush == nil {
		bPush = &push
	}
	a := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t)).With().Str("server", "dns-a").Logger(), Metrics: m})
	b := startPusher(t, Options{Zone: "demo.test.", Push: *bPush, Source: "dns-b", Log: zerolog.New(zerolog.NewTestWriter(t)).With().Str("server", "dns-b").Logger(), Metrics: m})
	return a, b
}

func behind(m *metrics.Metrics) float64 {
	return testutil.ToFloat64(m.Pushes.WithLabelValues("demo.test.", "behind"))
}

// failover is the state in which shop's first pool is down.
func failover(t *testing.T) *state.View {
	v := state.NewView()
	down(t, v, 1, "shop", "p1", "127-0-0-11_80")
	down(t, v, 2, "shop", "p1", "127-0-0-12_80")
	return v
}

var (
	firstPool  = []string{"127.0.0.11", "127.0.0.12"}
	secondPool = []string{"127.0.0.21"}
)

// olderLeavesNewer: the server at the newer STATE position pushes its failover; the other, at
// an older position, must leave it on the primary at addr.
func olderLeavesNewer(t *testing.T, addr string) {
	cfg := parsePushConfig(t, addr)
	m := metrics.New()
	newer, older := pushers(t, cfg, m, nil)
	newer.Offer(at(desired(t, cfg, failover(t), 20), 20, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(ask(t, addr, "shop.demo.test.", "A"), secondPool) },
		"the primary serves the newer server's failover")

	// The other server lost NATS before the failover and still pushes what it knew.
	older.Offer(at(desired(t, cfg, state.NewView(), 10), 10, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 }, "the older server counts a push held back")
	if got := ask(t, addr, "shop.demo.test.", "A"); !slices.Equal(got, secondPool) {
		t.Errorf("the older server replaced the failover: the primary serves %v, want %v", got, secondPool)
	}
	if !markerSays(t, addr, "seq=20", "stream-created=2025-06-01T12:00:00Z", "server=dns-a") {
		t.Errorf("marker %v, want the newer server's, at seq 20", ask(t, addr, markerName, "TXT"))
	}
}

// raceLostToNewer: both servers read the same marker; the newer one's UPDATE lands first, and
// the older one's, conditional on what it read, must find the marker changed and leave the
// newer state on the primary at addr.
func raceLostToNewer(t *testing.T, addr string) {
	cfg := parsePushConfig(t, addr)
	held, release := make(chan struct{}), make(chan struct{})
	gate := startGate(t, addr, func(n int) {
		if n == 1 {
			close(held)
			<-release
		}
	}, nil)
	bPush := *cfg.Zones[0].Push
	bPush.Server = gate
	m := metrics.New()
	newer, older := pushers(t, cfg, m, &bPush)
	older.Offer(at(desired(t, cfg, state.NewView(), 10), 10, testStream))
	await(t, held, "UPDATE from the older server")

	newer.Offer(at(desired(t, cfg, failover(t), 20), 20, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(ask(t, addr, "shop.demo.test.", "A"), secondPool) },
		"the primary serves the newer server's failover")
	close(release)
	eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 },
		"the older server, its UPDATE refused, reads the marker again and holds back")
	if got := ask(t, addr, "shop.demo.test.", "A"); !slices.Equal(got, secondPool) {
		t.Errorf("the older server's UPDATE replaced the failover: the primary serves %v, want %v", got, secondPool)
	}
	if !markerSays(t, addr, "seq=20", "server=dns-a") {
		t.Errorf("marker %v, want the newer server's, at seq 20", ask(t, addr, markerName, "TXT"))
	}
}

func TestAServerAtAnOlderStatePositionLeavesTheNewerStateAnotherServerPushed(t *testing.T) {
	primary := startApplyingPrimary(t)
	olderLeavesNewer(t, primary.addr)
}

func TestAServerThatLosesTheRaceForTheMarkerReadsItAgainAndLeavesTheNewerState(t *testing.T) {
	primary := startApplyingPrimary(t)
	raceLostToNewer(t, primary.addr)
	primary.mu.Lock()
	defer primary.mu.Unlock()
	if primary.unmet != 1 {
		t.Errorf("the primary refused %d UPDATEs for their prerequisite, want 1", primary.unmet)
	}
}

// The loser of a race for the marker reads the marker again, one query, and asks nothing of the
// names it was writing: the marker changed, which the refusal is for. Before, it asked the
// primary for the A records of every name of its update's first part (1,000 queries for a
// failover of 1,000 names, 1,100 for one of 10,000), as after a refusal for a delegation, at
// every race lost by one of two servers pushing the same failovers.
func TestTheLoserOfARaceForTheMarkerAsksTheMarkerAgainNotEveryNameItWasWriting(t *testing.T) {
	primary := startApplyingPrimary(t)
	var mu sync.Mutex
	hold, queries := false, 0
	held, release := make(chan struct{}), make(chan struct{})
	relay := startRelay(t, primary.addr, func(m *dns.Msg) func() {
		mu.Lock()
		stop := hold && m.Opcode == dns.OpcodeUpdate
		hold = hold && !stop
		if m.Opcode == dns.OpcodeQuery {
			queries++
		}
		mu.Unlock()
		if stop {
			close(held)
			await(t, release, "the release of the older server's failover")
		}
		return nil
	})
	asked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return queries
	}
	const names = 1000
	at := func(seq uint64, ip string) Desired {
		rrsets := map[zone.Key][]dns.RR{}
		for i := range names {
			own(rrsets, fmt.Sprintf("app-%d.demo.test.", i), ip)
		}
		return Desired{Serial: uint32(seq), RRsets: rrsets, State: Position{Seq: seq, Created: testStream}}
	}
	older, logs := startLogging(t, relay)
	older.Offer(at(10, "10.0.0.1"))
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "the older server's first push")

	// The older server's failover, decided on its own marker, waits at the relay while the
	// newer server pushes a later state.
	mu.Lock()
	hold = true
	mu.Unlock()
	older.Offer(at(20, "10.0.0.2"))
	await(t, held, "the older server's failover")
	cfg := parsePushConfig(t, primary.addr)
	newer := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t))})
	newer.Offer(at(30, "10.0.0.3"))
	eventstest.Eventually(t, 10*time.Second, func() bool { return markerSays(t, primary.addr, "seq=30", "server=dns-a") }, "the newer server's push")

	before := asked()
	close(release)
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count("zone not pushed: the primary holds a later state") == 1 },
		"the older server, its failover refused, reads the marker again and holds back")
	if n := asked() - before; n > 2 {
		t.Errorf("the older server sent %d queries after its failover of %d names was refused for the marker, want at most 2 (the marker, read again), not one a name", n, names)
	}
	if got := primary.at("app-999.demo.test."); !slices.Equal(got, []string{"A 10.0.0.3"}) {
		t.Errorf("app-999 after the race: %v, want the newer server's [A 10.0.0.3]", got)
	}
}

func TestARecreatedStateStreamIsNotHeldBackByTheOldStreamsMarker(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	m := metrics.New()
	old, recreated := pushers(t, cfg, m, nil)
	old.Offer(at(desired(t, cfg, failover(t), 10), 500, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(ask(t, primary.addr, "shop.demo.test.", "A"), secondPool) },
		"the primary serves the failover at seq 500")

	// STATE was deleted and created again: its sequences start over.
	again := testStream.Add(time.Hour)
	recreated.Offer(at(desired(t, cfg, state.NewView(), 11), 3, again))
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(ask(t, primary.addr, "shop.demo.test.", "A"), firstPool) },
		"the primary serves the recreated stream's state, at seq 3")
	if !markerSays(t, primary.addr, "seq=3", "stream-created=2025-06-01T13:00:00Z", "server=dns-b") {
		t.Errorf("marker %v, want seq 3 of the stream created at 13:00", ask(t, primary.addr, markerName, "TXT"))
	}

	// A server that has not seen the new stream yet is behind it, however high its sequence.
	laggard := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-c", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	laggard.Offer(at(desired(t, cfg, failover(t), 12), 600, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 }, "the server on the old stream holds back")
	if got := ask(t, primary.addr, "shop.demo.test.", "A"); !slices.Equal(got, firstPool) {
		t.Errorf("a server on the deleted stream replaced the recreated stream's state: %v, want %v", got, firstPool)
	}
}

// unheldWarning is the log line of a server that pushes over a marker STATE does not hold.
const unheldWarning = "the primary's marker names a position STATE does not hold; pushing over it"

func TestAMarkerOfAPositionTheLiveStateStreamDoesNotHoldIsPushedOverWithOneWarning(t *testing.T) {
	pos := func(seq uint64) Position { return Position{Seq: seq, Created: testStream} }
	later := testStream.Add(time.Hour)
	for _, c := range []struct {
		name string
		// marker is the position of the marker on the primary, live STATE's as the stream
		// tells it, at the server's.
		marker, live, at Position
		over             bool
	}{
		{"a sequence far beyond the last STATE holds (a hand edit, a STATE restored from a backup)",
			pos(1 << 40), pos(25), pos(25), true},
		{"a stream created later, by a clock ahead, than the live one the server follows",
			Position{Seq: 3, Created: later}, pos(25), pos(25), true},
		{"a later sequence STATE holds: another server is ahead", pos(20), pos(25), pos(10), false},
		{"the live stream, created since the one the server follows", Position{Seq: 3, Created: later}, Position{Seq: 3, Created: later}, pos(25), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			primary := startApplyingPrimary(t)
			cfg := parsePushConfig(t, primary.addr)
			marker := mark{at: c.marker, digest: "0123", server: "dns-x", run: "x1"}
			primary.set(func(p *applyingPrimary) { p.records[markerName] = []string{line(marker.rr(markerName))} })
			var logs eventstest.Logs
			m := metrics.New()
			live := func(context.Context) (Position, error) { return c.live, nil }
			b := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-b", Log: zerolog.New(&logs), Metrics: m, Live: live})
			b.Offer(at(desired(t, cfg, failover(t), 20), c.at.Seq, c.at.Created))
			if !c.over {
				eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 }, "dns-b holds back")
				if got := ask(t, primary.addr, markerName, "TXT"); len(got) != 1 || !strings.Contains(got[0], `"server=dns-x"`) {
					t.Errorf("marker %v, want dns-x's left in place", got)
				}
				if n := logs.Count(unheldWarning); n != 0 {
					t.Errorf("%d warnings of a marker STATE does not hold, want none: STATE holds it", n)
				}
				return
			}
			seq := fmt.Sprintf("seq=%d", c.at.Seq)
			eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, seq, "server=dns-b") },
				"dns-b's push over the marker, at its own position")
			if got := primary.at("shop.demo.test."); !slices.Equal(got, []string{"A 127.0.0.21"}) {
				t.Errorf("shop.demo.test.: %v, want dns-b's failover [A 127.0.0.21]", got)
			}
			if n := logs.Count(unheldWarning); n != 1 {
				t.Fatalf("%d warnings of a marker STATE does not hold, want one:\n%s", n, logs.String())
			}
			for _, field := range []string{
				fmt.Sprintf(`"primary_stream_seq":%d`, c.marker.Seq), `"primary_stream_created":"` + c.marker.Created.Format(time.RFC3339) + `"`,
				fmt.Sprintf(`"state_last_seq":%d`, c.live.Seq), `"state_stream_created":"` + c.live.Created.Format(time.RFC3339) + `"`,
			} {
				if !strings.Contains(logs.String(), field) {
					t.Errorf("the warning lacks %s:\n%s", field, logs.String())
				}
			}
			if n := behind(m); n != 0 {
				t.Errorf("dns-b held back %v times, want none", n)
			}
		})
	}
}

func TestAServerThatCannotAskSTATEPushesNothingOverALaterMarkerAndAsksAgainAfterTheBackoff(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	push.RetryInterval = config.Duration(100 * time.Millisecond)
	marker := mark{at: Position{Seq: 1 << 40, Created: testStream}, digest: "0123", server: "dns-x", run: "x1"}
	primary.set(func(p *applyingPrimary) { p.records[markerName] = []string{line(marker.rr(markerName))} })
	var mu sync.Mutex
	asked, reachable := 0, false
	live := func(context.Context) (Position, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		if !reachable {
			return Position{}, errors.New("nats: no responders available for request")
		}
		return Position{Seq: 25, Created: testStream}, nil
	}
	var logs eventstest.Logs
	b := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-b", Log: zerolog.New(&logs), Live: live})
	b.Offer(at(desired(t, cfg, failover(t), 20), 25, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asked >= 3
	}, "dns-b asking STATE again")
	primary.mu.Lock()
	updates := primary.updates
	primary.mu.Unlock()
	if updates != 0 {
		t.Errorf("dns-b sent %d UPDATEs over a marker it could not check, want none", updates)
	}
	if !strings.Contains(logs.String(), "check the primary's marker against STATE") {
		t.Errorf("the log does not say why the push waits:\n%s", logs.String())
	}

	// NATS answers again, with no new state: the marker is checked and pushed over.
	mu.Lock()
	reachable = true
	mu.Unlock()
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=25", "server=dns-b") },
		"dns-b's push once STATE answers")
}

func TestAServerRewritesEveryNameWhenAnotherServerPushedSinceItsOwnLastPush(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	a, b := pushers(t, cfg, metrics.New(), nil)
	rrsets := func(x, y string) map[zone.Key][]dns.RR {
		return map[zone.Key][]dns.RR{
			{Name: "x.demo.test.", Type: dns.TypeA}: {aRecord("x.demo.test.", x)},
			{Name: "y.demo.test.", Type: dns.TypeA}: {aRecord("y.demo.test.", y)},
		}
	}
	a.Offer(Desired{Serial: 1, RRsets: rrsets("10.0.0.1", "10.0.0.1"), State: Position{Seq: 10, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=10", "server=dns-a") }, "a's first push")
	b.Offer(Desired{Serial: 2, RRsets: rrsets("10.0.0.2", "10.0.0.1"), State: Position{Seq: 20, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-b") }, "b's push")

	// a folds x's change at 20 and its reversal at 25 in one go, and y's change at 30: its own
	// last push holds the x it wants, the primary another.
	a.Offer(Desired{Serial: 3, RRsets: rrsets("10.0.0.1", "10.0.0.3"), State: Position{Seq: 30, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=30", "server=dns-a") }, "a's second push")
	if got := ask(t, primary.addr, "x.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("x.demo.test. A: %v, want [10.0.0.1]: a sent only what differs from its own last push, over b's", got)
	}
	if got := ask(t, primary.addr, "y.demo.test.", "A"); !slices.Equal(got, []string{"10.0.0.3"}) {
		t.Errorf("y.demo.test. A: %v, want [10.0.0.3]", got)
	}
}

func TestAServerSendsNothingWhenThePrimaryHoldsTheStateAnotherServerPushedForIt(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	var logs eventstest.Logs
	a := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t))})
	b := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-b", Log: zerolog.New(&logs)})
	b.Offer(at(desired(t, cfg, state.NewView(), 10), 10, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "b's first push")
	a.Offer(at(desired(t, cfg, failover(t), 11), 20, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-a") }, "a's failover")
	primary.mu.Lock()
	updates := primary.updates
	primary.mu.Unlock()

	// b folds the same failover: the primary holds its records already.
	b.Offer(at(desired(t, cfg, failover(t), 11), 20, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("zone not pushed: the primary holds its records") == 1 || logs.Count("zone pushed") > 1
	}, "b's push of the failover")
	primary.mu.Lock()
	defer primary.mu.Unlock()
	if primary.updates != updates {
		t.Errorf("b sent %d UPDATEs for records the primary holds, want none", primary.updates-updates)
	}
}

func TestANameAServerPushedIsEmptiedWhenItLeavesTheConfigurationThoughAnotherServerPushedTheRestFirst(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	var logs eventstest.Logs
	a := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t))})
	b := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-b", Log: zerolog.New(&logs)})
	x, y := zone.Key{Name: "x.demo.test.", Type: dns.TypeA}, zone.Key{Name: "y.demo.test.", Type: dns.TypeA}
	withY := map[zone.Key][]dns.RR{x: {aRecord(x.Name, "10.0.0.1")}, y: {aRecord(y.Name, "10.0.0.9")}}
	withoutY := map[zone.Key][]dns.RR{x: {aRecord(x.Name, "10.0.0.1")}}
	b.Offer(Desired{Serial: 1, RRsets: withY, State: Position{Seq: 10, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("zone pushed") == 1 }, "b's push of x and y")

	// y leaves the configuration. a, starting with the new one, pushes first: it never owned
	// y, and leaves it, as it leaves any name of the primary's.
	a.Offer(Desired{Serial: 2, RRsets: withoutY, State: Position{Seq: 20, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-a") }, "a's push")

	// b takes the reload: the primary holds the records it wants, and y, which b pushed.
	b.Offer(Desired{Serial: 2, RRsets: withoutY, State: Position{Seq: 20, Created: testStream}})
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("zone not pushed: the primary holds its records") == 1 || logs.Count("zone pushed") == 2
	}, "b's push of the reload")
	if got := primary.at(y.Name); len(got) != 0 {
		t.Errorf("y left the configuration and b had pushed it: want no records of it on the primary, got %v", got)
	}
	if got := primary.at(x.Name); !slices.Equal(got, []string{"A 10.0.0.1"}) {
		t.Errorf("x: %v, want [A 10.0.0.1]", got)
	}
}

func TestARecheckLeavesAnotherServersStateOfItsPositionAndPushesOverAnEarlierOne(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	a, b := pushers(t, cfg, metrics.New(), nil)
	x := zone.Key{Name: "x.demo.test.", Type: dns.TypeA}
	at := func(ip string, seq uint64, recheck bool) Desired {
		return Desired{Serial: 1, RRsets: map[zone.Key][]dns.RR{x: {aRecord(x.Name, ip)}}, State: Position{Seq: seq, Created: testStream}, Recheck: recheck}
	}
	a.Offer(at("10.0.0.1", 20, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-a") }, "a's push")
	primary.mu.Lock()
	reads, updates := primary.reads, primary.updates
	primary.mu.Unlock()

	// b's records differ at a's position (another configuration): its recheck leaves a's, so
	// that the two do not take the primary from each other at every recheck.
	b.Offer(at("10.0.0.2", 20, true))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.reads > reads
	}, "b's read of the marker")
	// Once b has read further, its recheck goes out over a's earlier state.
	b.Offer(at("10.0.0.2", 21, true))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=21", "server=dns-b") }, "b's push over a's earlier state")
	if got := primary.at(x.Name); !slices.Equal(got, []string{"A 10.0.0.2"}) {
		t.Errorf("x: %v, want [A 10.0.0.2]", got)
	}
	primary.mu.Lock()
	defer primary.mu.Unlock()
	if n := primary.updates - updates; n != 1 {
		t.Errorf("b sent %d UPDATEs, want 1: its recheck at a's position pushed over a's state", n)
	}
}

// bigZone is a zone of a thousand names, each with the address ip: an update of it outgrows one
// TCP message.
func bigZone(ip string) map[zone.Key][]dns.RR {
	out := map[zone.Key][]dns.RR{}
	for i := range 1000 {
		name := fmt.Sprintf("app-%d.demo.test.", i)
		out[zone.Key{Name: name, Type: dns.TypeA}] = []dns.RR{aRecord(name, ip), aRecord(name, "10.1.0.1")}
	}
	return out
}

func aRecord(name, ip string) dns.RR { return a(name, ip) }

// own sets name's RRsets in rrsets as an app's name is pushed: one A record, ip, and neither
// AAAA nor CNAME.
func own(rrsets map[zone.Key][]dns.RR, name, ip string) {
	rrsets[zone.Key{Name: name, Type: dns.TypeA}] = []dns.RR{aRecord(name, ip)}
	rrsets[zone.Key{Name: name, Type: dns.TypeAAAA}] = nil
	rrsets[zone.Key{Name: name, Type: dns.TypeCNAME}] = nil
}

func TestTwoServersSplittingLargeUpdatesCannotInterleaveTheirParts(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	aFirst, bAtGate, bFirst := make(chan struct{}), make(chan struct{}), make(chan struct{})
	// The newer server's second part waits for the older server's first to be answered...
	gateA := startGate(t, primary.addr, func(n int) {
		if n == 2 {
			await(t, bFirst, "answer to the older server's first part")
		}
	}, func(n int) {
		if n == 1 {
			close(aFirst)
		}
	})
	// ... which comes after the newer server's first part, both decided on the same marker.
	gateB := startGate(t, primary.addr, func(n int) {
		if n == 1 {
			close(bAtGate)
			await(t, aFirst, "answer to the newer server's first part")
		}
	}, func(n int) {
		if n == 1 {
			close(bFirst)
		}
	})
	aPush, bPush := *cfg.Zones[0].Push, *cfg.Zones[0].Push
	aPush.Server, bPush.Server = gateA, gateB
	m := metrics.New()
	newer := startPusher(t, Options{Zone: "demo.test.", Push: aPush, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	older := startPusher(t, Options{Zone: "demo.test.", Push: bPush, Source: "dns-b", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m})
	older.Offer(Desired{Serial: 1, RRsets: bigZone("10.0.0.2"), State: Position{Seq: 10, Created: testStream}})
	await(t, bAtGate, "the older server's first part")
	newer.Offer(Desired{Serial: 2, RRsets: bigZone("10.0.0.1"), State: Position{Seq: 20, Created: testStream}})

	eventstest.Eventually(t, 10*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-a") },
		"the newer server's marker")
	eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 }, "the older server holds back")
	var older1 []string
	for i := range 1000 {
		name := fmt.Sprintf("app-%d.demo.test.", i)
		if got := primary.at(name); !slices.Equal(got, []string{"A 10.0.0.1", "A 10.1.0.1"}) {
			older1 = append(older1, name)
		}
	}
	if len(older1) > 0 {
		t.Errorf("%d names (%s first) do not hold the newer server's records under its marker", len(older1), older1[0])
	}
	primary.mu.Lock()
	defer primary.mu.Unlock()
	if primary.unconditional > 0 {
		t.Errorf("%d UPDATEs of %d carried no prerequisite: each part must", primary.unconditional, primary.updates)
	}
}

func TestRetriesAgainstARefusingPrimaryBackOffAndANewStateGoesOutAtOnce(t *testing.T) {
	primary := startApplyingPrimary(t)
	primary.set(func(p *applyingPrimary) { p.refuse = true })
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	push.RetryInterval = config.Duration(100 * time.Millisecond)
	p := runPusher(t, push, nil)
	tried := func() []time.Time {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return slices.Clone(primary.tried)
	}
	gaps := func(ts []time.Time) []time.Duration {
		var out []time.Duration
		for i := 1; i < len(ts); i++ {
			out = append(out, ts[i].Sub(ts[i-1]))
		}
		return out
	}

	p.Offer(desired(t, cfg, state.NewView(), 10))
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(tried()) >= 5 }, "five attempts")
	g := gaps(tried()[:5])
	if g[2] <= g[0] || g[3] < 3*g[0] {
		t.Errorf("gaps between attempts %v: want them to grow, the fourth at least three times the first", g)
	}

	// A new state does not wait for the backoff of the one before.
	n := len(tried())
	offered := time.Now()
	p.Offer(desired(t, cfg, failover(t), 11))
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(tried()) > n }, "an attempt with the new state")
	if took := tried()[n].Sub(offered); took > 500*time.Millisecond {
		t.Errorf("the new state reached the primary %s after it was offered, want within 500ms", took.Round(time.Millisecond))
	}

	// A success starts the backoff over.
	primary.set(func(p *applyingPrimary) { p.refuse = false })
	eventstest.Eventually(t, 10*time.Second, func() bool { return slices.Equal(primary.at("shop.demo.test."), []string{"A 127.0.0.21"}) },
		"the primary accepts the failover")
	primary.set(func(p *applyingPrimary) { p.refuse = true })
	n = len(tried())
	p.Offer(desired(t, cfg, state.NewView(), 12))
	eventstest.Eventually(t, 10*time.Second, func() bool { return len(tried()) >= n+2 }, "two attempts after the success")
	if g := tried()[n+1].Sub(tried()[n]); g > 400*time.Millisecond {
		t.Errorf("the first retry after a success came %s after its attempt, want about the retry interval (100ms)", g.Round(time.Millisecond))
	}
}

func TestAPushIsHeldBackByTheMarkOfALaterStateOrOfAnotherServersPushUnderWayAlone(t *testing.T) {
	pos := func(seq uint64) Position { return Position{Seq: seq, Created: testStream} }
	marker := func(seq uint64) *mark { return &mark{at: pos(seq), server: "dns-b", run: "b1"} }
	claim := func(seq uint64, server, run string) *mark {
		return &mark{claim: true, at: pos(seq), server: server, run: run}
	}
	for _, c := range []struct {
		name   string
		h      held
		at     Position
		behind bool
		// expired says that the claim has been read for longer than it holds pushes back.
		expired bool
	}{
		{"no marker", held{}, pos(10), false, false},
		{"a marker of an earlier position", held{marker: marker(9)}, pos(10), false, false},
		{"a marker of the same position", held{marker: marker(10)}, pos(10), false, false},
		{"a marker of a later position", held{marker: marker(11)}, pos(10), true, false},
		{"a marker of a stream created since", held{marker: marker(1)}, Position{Seq: 500, Created: testStream.Add(-time.Hour)}, true, false},
		{"a marker of a stream deleted since", held{marker: marker(500)}, Position{Seq: 1, Created: testStream.Add(time.Hour)}, false, false},
		{"another server's claim of a later position", held{marker: marker(5), claim: claim(11, "dns-b", "b1")}, pos(10), true, false},
		{"another server's claim of the same position", held{marker: marker(5), claim: claim(10, "dns-b", "b1")}, pos(10), true, false},
		{"another server's claim of an earlier position", held{marker: marker(5), claim: claim(9, "dns-b", "b1")}, pos(10), false, false},
		{"another server's claim read over a minute ago", held{marker: marker(5), claim: claim(11, "dns-b", "b1")}, pos(10), false, true},
		{"this pusher's own claim", held{marker: marker(5), claim: claim(11, "dns-a", "a1")}, pos(10), false, false},
		{"an earlier run's claim of the same position", held{marker: marker(5), claim: claim(10, "dns-a", "a0")}, pos(10), false, false},
		{"an earlier run's claim of a later position", held{marker: marker(5), claim: claim(11, "dns-a", "a0")}, pos(10), true, false},
	} {
		if got := c.h.ahead(c.at, "dns-a", "a1", !c.expired); (got != nil) != c.behind {
			t.Errorf("%s: held back %v, want %v", c.name, got != nil, c.behind)
		}
	}
}

func TestAMarkReadsBackAsItWasWritten(t *testing.T) {
	for _, m := range []mark{
		{at: Position{Seq: 42, Created: testStream.Add(123 * time.Nanosecond)}, digest: "0123abcd", server: "dns-1", run: "r1"},
		{claim: true, at: Position{Seq: 43, Created: testStream}, server: "dns-2", run: "r2", since: testStream.Add(time.Minute)},
		{at: Position{Seq: 44, Created: testStream}, digest: "4567cdef", server: "dns-3", run: "r3", recheck: true},
		{at: Position{Seq: 45, Created: testStream}, digest: "89abef01", serial: 7, serialSet: true, config: 12, configTime: testStream.Add(time.Hour), server: "dns-4", run: "r4"},
	} {
		rr, err := dns.NewRR(m.rr(markerName).String())
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseMark(rr)
		if !ok || got.claim != m.claim || got.at.Seq != m.at.Seq || !got.at.Created.Equal(m.at.Created) || got.digest != m.digest ||
			got.server != m.server || got.run != m.run || !got.since.Equal(m.since) || got.recheck != m.recheck || got.config != m.config ||
			!got.configTime.Equal(m.configTime) {
			t.Errorf("%s read back as %+v, %v", rr, got, ok)
		}
	}
}

// leaveClaim has the primary hold what dns-a leaves when it stops in the middle of a push of
// seq 20 begun at since (by its own clock): its marker of seq 10 and its claim.
func leaveClaim(primary *applyingPrimary, since time.Time) {
	marker := mark{at: Position{Seq: 10, Created: testStream}, digest: "0123", server: "dns-a", run: "a1"}
	claim := mark{claim: true, at: Position{Seq: 20, Created: testStream}, server: "dns-a", run: "a1", since: since}
	primary.set(func(p *applyingPrimary) {
		p.records[markerName] = []string{line(marker.rr(markerName)), line(claim.rr(markerName))}
	})
}

func TestAClaimLeftByAServerThatStoppedMidPushHoldsAnotherBackOnlyUntilItExpires(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	leaveClaim(primary, time.Now())
	m := metrics.New()
	b := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-b", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m},
		func(p *Pusher) { p.expiry = 2 * time.Second })
	b.Offer(at(desired(t, cfg, failover(t), 20), 20, testStream))
	eventstest.Eventually(t, 5*time.Second, func() bool { return behind(m) == 1 }, "dns-b holds back for dns-a's claim")

	// No newer state comes: dns-b pushes the one it holds once the claim expires.
	eventstest.Eventually(t, 10*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-b") },
		"dns-b's push once dns-a's claim expired")
	if got := primary.at("shop.demo.test."); !slices.Equal(got, []string{"A 127.0.0.21"}) {
		t.Errorf("shop.demo.test.: %v, want dns-b's failover [A 127.0.0.21]", got)
	}
}

func TestAClaimHoldsOtherServersBackForItsLifeWhateverTheClockOfItsServer(t *testing.T) {
	for _, c := range []struct {
		name string
		// skew is how far dns-a's clock is ahead of dns-b's.
		skew time.Duration
	}{
		{"a clock two minutes behind", -2 * time.Minute},
		{"a clock an hour ahead", time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			primary := startApplyingPrimary(t)
			cfg := parsePushConfig(t, primary.addr)
			leaveClaim(primary, time.Now().Add(c.skew))
			m := metrics.New()
			b := startPusher(t, Options{Zone: "demo.test.", Push: *cfg.Zones[0].Push, Source: "dns-b", Log: zerolog.New(zerolog.NewTestWriter(t)), Metrics: m},
				func(p *Pusher) { p.expiry = 2 * time.Second })
			b.Offer(at(desired(t, cfg, failover(t), 20), 20, testStream))
			eventstest.Eventually(t, 10*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-b") },
				"dns-b's push once dns-a's claim expired")
			if n := behind(m); n != 1 {
				t.Errorf("dns-b held back %v times before it pushed, want once: the claim, just read, holds it back", n)
			}
		})
	}
}

// txtAt returns the TXT record at name whose RDATA is rdata as a primary sends it, or nil when
// rdata is not one.
func txtAt(name string, rdata []byte) dns.RR {
	buf := make([]byte, 256+10+len(rdata))
	off, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil || len(rdata) > 0xffff {
		return nil
	}
	binary.BigEndian.PutUint16(buf[off:], dns.TypeTXT)
	binary.BigEndian.PutUint16(buf[off+2:], dns.ClassINET)
	binary.BigEndian.PutUint32(buf[off+4:], 3600)
	binary.BigEndian.PutUint16(buf[off+8:], uint16(len(rdata)))
	off += 10 + copy(buf[off+10:], rdata)
	rr, _, err := dns.UnpackRR(buf[:off], 0)
	if err != nil {
		return nil
	}
	return rr
}

// rdataOf returns the RDATA of rr as packed.
func rdataOf(t testing.TB, rr dns.RR) []byte {
	t.Helper()
	buf := make([]byte, dns.Len(rr)+256)
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		t.Fatalf("pack %s: %v", rr, err)
	}
	return buf[n-int(rr.Header().Rdlength) : n]
}

// FuzzMarkerRRset holds the reading of the marker RRset to whatever TXT records a primary answers
// there (a hand edit, another tool's, a marker cut short or of another version): reading them
// never panics, every update requires exactly the records read, byte for byte (a primary
// compares them so: RFC 2136 §3.2.3), and a mark read writes back as itself.
func FuzzMarkerRRset(f *testing.F) {
	created := testStream.Add(123 * time.Nanosecond)
	for _, m := range []mark{
		{at: Position{Seq: 42, Created: created}, digest: "0123abcd", server: "dns-1", run: "r1"},
		{claim: true, at: Position{Seq: 43, Created: created}, server: "dns-2", run: "r2", since: testStream},
	} {
		f.Add(rdataOf(f, m.rr(markerName)), []byte("\x05hello"))
	}
	f.Add([]byte("\x0cdetour-state\x06seq=99\x0fstream-created="), []byte("\x00\x00"))
	positions := []Position{{}, {Seq: 42, Created: created}, {Seq: 1 << 63, Created: created.Add(time.Hour)}}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var rrs []dns.RR
		var rdatas [][]byte
		for _, rdata := range [][]byte{a, b} {
			if rr := txtAt(markerName, rdata); rr != nil {
				rrs, rdatas = append(rrs, rr), append(rdatas, rdataOf(t, rr))
			}
		}
		h := readHeld(rrs)
		for _, at := range positions {
			h.ahead(at, "dns-1", "r1", true)
			h.ahead(at, "dns-1", "r1", false)
		}
		for _, rr := range rrs {
			m, ok := parseMark(rr)
			if !ok || len(m.server) > 240 {
				continue
			}
			back, ok := parseMark(m.rr(markerName))
			if !ok || back.claim != m.claim || back.at.Seq != m.at.Seq || !back.at.Created.Equal(m.at.Created) || back.digest != m.digest ||
				back.server != m.server || back.run != m.run || !back.since.Equal(m.since) || back.config != m.config ||
				!back.configTime.Equal(m.configTime) && m.config > 0 {
				t.Errorf("%s read as %+v, written back as %s, read again as %+v, %v", rr, m, m.rr(markerName), back, ok)
			}
		}

		// The update, whole or in parts, carries the records read as its prerequisite.
		u := new(dns.Msg)
		u.SetUpdate("demo.test.")
		u.Insert([]dns.RR{aRecord("shop.demo.test.", "10.0.0.1")})
		marker := mark{at: positions[1], digest: "0123", server: "dns-1", run: "r1"}
		claim := mark{claim: true, at: positions[1], server: "dns-1", run: "r1", since: testStream}
		for _, max := range []int{maxUpdate, 0} {
			parts := conditional("demo.test.", markerName, markerName, nil, h, u, marker, claim, max)
			wire, err := parts[0].Pack()
			if err != nil {
				t.Fatalf("pack the update's first part: %v", err)
			}
			var got dns.Msg
			if err := got.Unpack(wire); err != nil {
				t.Fatalf("unpack the update's first part: %v", err)
			}
			var required [][]byte
			for _, rr := range got.Answer {
				if rr.Header().Class == dns.ClassINET {
					required = append(required, rdataOf(t, rr))
				}
			}
			if len(required) != len(rdatas) {
				t.Fatalf("the update requires %d records, want the %d read", len(required), len(rdatas))
			}
			for i := range rdatas {
				if !slices.Equal(required[i], rdatas[i]) {
					t.Errorf("the update requires %q, want %q as read", required[i], rdatas[i])
				}
			}
		}
	})
}

func TestTwoServersWhoseConfigurationsDifferTakeThePrimaryFromEachOtherOnlyAtChangesAndTheRecheckSaysSo(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	push, m := *cfg.Zones[0].Push, metrics.New()
	aLogs, bLogs := &eventstest.Logs{}, &eventstest.Logs{}
	logTo := func(l *eventstest.Logs) zerolog.Logger {
		return zerolog.New(io.MultiWriter(l, zerolog.NewTestWriter(t)))
	}
	a := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-a", Log: logTo(aLogs), Metrics: m})
	b := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-b", Log: logTo(bLogs), Metrics: m})
	x := zone.Key{Name: "x.demo.test.", Type: dns.TypeA}
	at := func(ip string, seq uint64, recheck bool) Desired {
		return Desired{Serial: 1, RRsets: map[zone.Key][]dns.RR{x: {aRecord(x.Name, ip)}}, State: Position{Seq: seq, Created: testStream}, Recheck: recheck}
	}
	updates := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.updates
	}
	reads := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.reads
	}
	a.Offer(at("10.0.0.1", 20, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "server=dns-a") }, "a's push")

	// b's configuration differs from a's, and STATE moved on: b's recheck pushes over a's
	// change, as over one that a server stopped before it pushed its end, and says so.
	b.Offer(at("10.0.0.2", 21, true))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=21", "server=dns-b") }, "b's recheck over a's change")

	// a's recheck leaves b's records, which no change of b's made: the two do not take the
	// primary from each other at every recheck.
	n, r := updates(), reads()
	a.Offer(at("10.0.0.1", 22, true))
	eventstest.Eventually(t, 5*time.Second, func() bool { return reads() > r }, "a's recheck")
	a.Offer(at("10.0.0.1", 23, true))
	eventstest.Eventually(t, 5*time.Second, func() bool { return reads() > r+1 }, "a's second recheck")
	if got, sent := primary.at(x.Name), updates()-n; !slices.Equal(got, []string{"A 10.0.0.2"}) || sent != 0 {
		t.Fatalf("after a's rechecks x holds %v (%d UPDATEs), want [A 10.0.0.2] and none", got, sent)
	}

	// A change of a's goes out, as it did before rechecks.
	a.Offer(at("10.0.0.3", 24, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=24", "server=dns-a") }, "a's change")

	var lines []string
	for _, l := range strings.Split(bLogs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, pushedOverMessage) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"primary_pushed_by":"dns-a","primary_stream_seq":20`) {
		t.Errorf("b logged %d warnings %q, want one naming dns-a at 20:\n%s", len(lines), pushedOverMessage, bLogs)
	}
	if c := aLogs.Count(pushedOverMessage); c != 0 {
		t.Errorf("a logged %q %d times, want none", pushedOverMessage, c)
	}
}

// Two servers push one primary while their configurations differ: b refused version 8 (or has
// not read it yet), which a applied. b pushes a change last, at the position a pushed it, and
// then stops. Before, a's recheck stood aside for b's marker of its position, and the primary
// served version 7's records (an app removed still answered, a new TTL not applied) until STATE
// next changed, hours or days on a quiet system; now a's next recheck pushes its records over
// b's, and says so. b, still running, leaves a's records of the newer version at its rechecks:
// the two do not take the primary from each other at every recheck.
func TestARecheckPushesOverAnotherServersRecordsOfAnOlderConfigurationVersionAndLeavesANewerOnes(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	aLogs, bLogs := &eventstest.Logs{}, &eventstest.Logs{}
	logTo := func(l *eventstest.Logs) zerolog.Logger {
		return zerolog.New(io.MultiWriter(l, zerolog.NewTestWriter(t)))
	}
	a := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-a", Log: logTo(aLogs)})
	b := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-b", Log: logTo(bLogs)})
	x := zone.Key{Name: "x.demo.test.", Type: dns.TypeA}
	at := func(ip string, seq, version uint64, recheck bool) Desired {
		return Desired{Serial: 1, RRsets: map[zone.Key][]dns.RR{x: {aRecord(x.Name, ip)}}, State: Position{Seq: seq, Created: testStream},
			Recheck: recheck, Config: version}
	}

	a.Offer(at("10.0.0.2", 20, 8, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "config=8", "server=dns-a") }, "a's push")
	b.Offer(at("10.0.0.1", 20, 7, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "config=7", "server=dns-b") }, "b's push after a's")

	// b stops. a's next recheck puts version 8's records back, once.
	a.Offer(at("10.0.0.2", 20, 8, true))
	eventstest.Eventually(t, 5*time.Second, func() bool {
		return markerSays(t, primary.addr, "seq=20", "config=8", "by=recheck", "server=dns-a")
	}, "a's recheck over b's records of version 7")
	if got := primary.at(x.Name); !slices.Equal(got, []string{"A 10.0.0.2"}) {
		t.Errorf("after a's recheck x holds %v, want version 8's [A 10.0.0.2]", got)
	}
	if sent := rechecks(t, primary, a, at("10.0.0.2", 20, 8, true)); sent != 0 {
		t.Errorf("a's rechecks of its own records sent %d UPDATEs, want none", sent)
	}
	var lines []string
	for _, l := range strings.Split(aLogs.String(), "\n") {
		if strings.Contains(l, `"level":"warn"`) && strings.Contains(l, olderConfigMessage) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"primary_pushed_by":"dns-b"`) ||
		!strings.Contains(lines[0], `"primary_config_version":7,"config_version":8`) {
		t.Errorf("a logged %d warnings %q, want one naming dns-b and versions 7 and 8:\n%s", len(lines), olderConfigMessage, aLogs)
	}

	// The reverse: a pushes the next change last, and b, still on version 7, rechecks.
	b.Offer(at("10.0.0.3", 21, 7, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=21", "config=7", "server=dns-b") }, "b's change")
	a.Offer(at("10.0.0.4", 21, 8, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=21", "config=8", "server=dns-a") }, "a's change after b's")
	if sent := rechecks(t, primary, b, at("10.0.0.3", 21, 7, true)); sent != 0 {
		t.Errorf("b's rechecks over a's records of version 8 sent %d UPDATEs, want none", sent)
	}
	if got := primary.at(x.Name); !slices.Equal(got, []string{"A 10.0.0.4"}) {
		t.Errorf("after b's rechecks x holds %v, want version 8's [A 10.0.0.4]", got)
	}
	if c := bLogs.Count(olderConfigMessage) + bLogs.Count(pushedOverMessage); c != 0 {
		t.Errorf("b logged %d pushes over a's records, want none:\n%s", c, bLogs)
	}
}

// CONFIG was deleted and created again, its numbers starting over: a applied version 2 of the
// new stream, while b refuses it and keeps version 20 of the old one, applied before. Neither
// version's records are the other's older ones by number alone: before, b's rechecks pushed
// version 20's records over a's within a minute of every change a pushed last, for as long as b
// refused, and the primary served the deleted stream's configuration. The marker says when its
// version was applied, and a version numbered lower but applied later is not an older one:
// neither server's recheck pushes over the other's records, as before markers named versions.
func TestARecheckLeavesRecordsOfAConfigurationStreamCreatedAgainToTheirServer(t *testing.T) {
	primary := startApplyingPrimary(t)
	cfg := parsePushConfig(t, primary.addr)
	push := *cfg.Zones[0].Push
	a := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-a", Log: zerolog.New(zerolog.NewTestWriter(t))})
	b := startPusher(t, Options{Zone: "demo.test.", Push: push, Source: "dns-b", Log: zerolog.New(zerolog.NewTestWriter(t))})
	x := zone.Key{Name: "x.demo.test.", Type: dns.TypeA}
	oldStream, newStream := testStream.Add(-time.Hour), testStream.Add(time.Hour)
	at := func(ip string, seq, version uint64, applied time.Time, recheck bool) Desired {
		return Desired{Serial: 1, RRsets: map[zone.Key][]dns.RR{x: {aRecord(x.Name, ip)}}, State: Position{Seq: seq, Created: testStream},
			Recheck: recheck, Config: version, ConfigTime: applied}
	}
	b.Offer(at("10.0.0.1", 20, 20, oldStream, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "config=20", "server=dns-b") }, "b's push")
	a.Offer(at("10.0.0.2", 20, 2, newStream, false))
	eventstest.Eventually(t, 5*time.Second, func() bool { return markerSays(t, primary.addr, "seq=20", "config=2", "server=dns-a") }, "a's push after b's")
	if sent := rechecks(t, primary, b, at("10.0.0.1", 20, 20, oldStream, true)); sent != 0 {
		t.Errorf("b's rechecks over a's records of the new stream's version 2 sent %d UPDATEs, want none", sent)
	}
	if got := primary.at(x.Name); !slices.Equal(got, []string{"A 10.0.0.2"}) {
		t.Errorf("after b's rechecks x holds %v, want a's [A 10.0.0.2]", got)
	}
}

// rechecks offers p the recheck d three times, each once p took the one before, and returns how
// many UPDATEs primary got by the time p took the third: the first two have gone by then.
func rechecks(t *testing.T, primary *applyingPrimary, p *Pusher, d Desired) int {
	t.Helper()
	updates := func() int {
		primary.mu.Lock()
		defer primary.mu.Unlock()
		return primary.updates
	}
	n := updates()
	for range 3 {
		p.Offer(d)
		eventstest.Eventually(t, 5*time.Second, func() bool { return len(p.offers) == 0 }, "the pusher taking the recheck")
	}
	return updates() - n
}
