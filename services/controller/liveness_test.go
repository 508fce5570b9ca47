package controller

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

const liveDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]
edges:
  - {name: west, region: w, hostname: west.demo.test, address: 127.0.0.21, heartbeat: {interval: 1s, fall: 3}}
`

func liveConfig(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(liveDoc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLiveness runs a timeline, one step per 500ms: 'h' a heartbeat arrives, '.' nothing does.
// want is the status after each step, as STATE would hold it once the changes are appended:
// '?' unknown, 'U' up, 'D' down.
func TestLiveness(t *testing.T) {
	tests := []struct {
		name, steps, want string
	}{
		{name: "the first heartbeat brings an unknown edge up", steps: "h", want: "U"},
		{name: "heartbeats every interval keep it up", steps: "h.h.h.h.h.", want: "UUUUUUUUUU"},
		{name: "three missed heartbeats of 1s take it down after 3.2s", steps: "h.......", want: "UUUUUUUD"},
		{name: "one late heartbeat does not", steps: "h.....h.....h", want: "UUUUUUUUUUUUU"},
		{name: "heartbeats resuming bring it back at once", steps: "h........h.h", want: "UUUUUUUDDUUU"},
		{name: "an edge that never reports goes down after the same silence from the start", steps: "........", want: "??????DD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1700000000, 0)
			l := NewLiveness(liveConfig(t), start)
			status := events.StatusUnknown
			var got strings.Builder
			for i, s := range tt.steps {
				now := start.Add(time.Duration(i+1) * 500 * time.Millisecond)
				if s == 'h' {
					l.Heartbeat("west", "hb", 0, now)
				}
				status = appendDue(t, l, now, status)
				got.WriteByte(statusLetter[status])
			}
			if got.String() != tt.want {
				t.Errorf("statuses %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestADownChangeSaysWhyAndRestsOnTheLastHeartbeat(t *testing.T) {
	start := time.Unix(1700000000, 0)
	l := NewLiveness(liveConfig(t), start)
	l.Heartbeat("west", "hb-1", 0, start)
	l.Recorded("west", events.StatusUp)
	if due := l.Due(start.Add(3200 * time.Millisecond)); len(due) != 0 {
		t.Fatalf("at exactly fall × interval + tolerance: %+v, want nothing yet", due)
	}
	due := l.Due(start.Add(3201 * time.Millisecond))
	want := Change{Edge: "west", From: events.StatusUp, To: events.StatusDown, Reason: "3 missed heartbeats (interval 1s)",
		Heartbeat: "hb-1", Thresholds: events.Thresholds{IntervalMS: 1000, HeartbeatFall: 3}}
	if len(due) != 1 || due[0] != want {
		t.Fatalf("due = %+v, want %+v", due, want)
	}
}

func TestHeartbeatsOfUnknownEdgesAreRefused(t *testing.T) {
	l := NewLiveness(liveConfig(t), time.Unix(0, 0))
	if l.Heartbeat("north", "x", 0, time.Unix(1, 0)) {
		t.Fatal("a heartbeat of an edge that is not configured was accepted")
	}
}

// TestLivenessFromHeartbeatsAndListenerChecks runs a timeline, one step per 500ms, with a
// heartbeat and a check of the edge's listener from each of two regions per step: 'h' heartbeat
// and both checks pass, 'w' heartbeat while both checks fail (a wedged edge), 'c' no heartbeat
// while both checks pass (an edge cut off from NATS), 's' a heartbeat and one region's check
// failing, '.' nothing at all. The app's check has fall 3, rise 2, stale_after 3s.
func TestLivenessFromHeartbeatsAndListenerChecks(t *testing.T) {
	tests := []struct {
		name, steps, want, reason string
	}{
		{name: "a wedged edge whose heartbeats flow goes down after fall failed checks", steps: "hhhwww", want: "UUUUUD",
			reason: "listener checks: 1 of 1 listeners failing by their apps' quorum of regions (heartbeats arrive)"},
		{name: "an edge cut off from NATS whose listeners answer stays up", steps: "hhcccccccccc", want: "UUUUUUUUUUUU"},
		{name: "one region of two seeing failures is not a majority", steps: "hhssssss", want: "UUUUUUUU"},
		{name: "a wedged edge comes back after rise passing checks", steps: "hhwwwhh", want: "UUUUDDU",
			reason: "listener checks: 1 of 1 listeners answering (heartbeats arrive)"},
		{name: "when the checks go stale the heartbeats decide again", steps: "hhh...........", want: "UUUUUUUUUDDDDD",
			reason: "3 missed heartbeats (interval 1s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {interval: 500ms, fall: 3, rise: 2, stale_after: 3s}
    pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]
edges:
  - {name: west, region: w, hostname: west.demo.test, address: 127.0.0.21, heartbeat: {interval: 1s, fall: 3}, apps: [{app: shop, listen: "127.0.0.21:80", pool: p}]}
`))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Unix(1700000000, 0)
			l := NewLiveness(c, start)
			status, reason := events.StatusUnknown, ""
			var got strings.Builder
			for i, s := range tt.steps {
				now := start.Add(time.Duration(i+1) * 500 * time.Millisecond)
				if s == 'h' || s == 'w' || s == 's' {
					l.Heartbeat("west", "hb", 0, now)
				}
				if s != '.' {
					l.Probe("west", "shop", "r1", s == 'h' || s == 'c' || s == 's', 0, now)
					l.Probe("west", "shop", "r2", s == 'h' || s == 'c', 0, now)
				}
				for _, ch := range l.Due(now) {
					status, reason = ch.To, ch.Reason
					l.Recorded("west", status)
				}
				got.WriteByte(statusLetter[status])
			}
			if got.String() != tt.want {
				t.Errorf("statuses %s, want %s", got.String(), tt.want)
			}
			if tt.reason != "" && reason != tt.reason {
				t.Errorf("last change's reason %q, want %q", reason, tt.reason)
			}
		})
	}
}

// TestLivenessCountsOnlyTheTimeTheControllerRan runs a timeline, one step per 200ms (the
// StallAfter of a 1s heartbeat interval): 'h' the controller runs and a heartbeat arrives, '.'
// it runs and none does, 's' it is not scheduled at all (neither Awake nor Due is called). Each
// step it runs, it tells Awake, then decides, as the shell does. want is the status after each
// step, as in TestLiveness.
func TestLivenessCountsOnlyTheTimeTheControllerRan(t *testing.T) {
	tests := []struct {
		name, steps, want string
	}{
		{name: "a dead edge is down once silent 3.2s while the controller runs",
			steps: "h" + strings.Repeat(".", 17), want: strings.Repeat("U", 17) + "D"},
		{name: "a stall of 4s is not the edge's silence: its heartbeats, queued meanwhile, follow",
			steps: "h..." + strings.Repeat("s", 20) + ".h", want: strings.Repeat("U", 26)},
		{name: "a dead edge is down once silent 3.2s of the time the controller ran, a stall's first 200ms with it",
			steps: "h....." + strings.Repeat("s", 20) + strings.Repeat(".", 12), want: strings.Repeat("U", 37) + "D"},
		{name: "a controller stalled four steps in five still takes a dead edge down, counting 200ms of each stall",
			steps: "h" + strings.Repeat("ssss.", 17), want: strings.Repeat("U", 85) + "D"},
		{name: "a stall brings no dead edge back",
			steps: "h" + strings.Repeat(".", 17) + strings.Repeat("s", 20) + "..", want: strings.Repeat("U", 17) + strings.Repeat("D", 23)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1700000000, 0)
			l := NewLiveness(liveConfig(t), start)
			if got := l.StallAfter(); got != 200*time.Millisecond {
				t.Fatalf("StallAfter = %s, want 200ms", got)
			}
			l.Awake(start)
			status := events.StatusUnknown
			var got strings.Builder
			for i, s := range tt.steps {
				now := start.Add(time.Duration(i+1) * 200 * time.Millisecond)
				if s != 's' {
					l.Awake(now)
					if s == 'h' {
						l.Heartbeat("west", "hb", 0, now)
					}
					status = appendDue(t, l, now, status)
				}
				got.WriteByte(statusLetter[status])
			}
			if got.String() != tt.want {
				t.Errorf("statuses %s\nwant     %s", got.String(), tt.want)
			}
		})
	}
}

func TestAStallDoesNotShortenTheGraceAfterAReconnection(t *testing.T) {
	start := time.Unix(1700000000, 0)
	l := NewLiveness(liveConfig(t), start)
	l.Heartbeat("west", "hb", 0, start)
	l.Recorded("west", events.StatusUp)
	l.Awake(start)
	l.Grace(start.Add(5 * time.Second)) // back at start+3s, with a 2s allowance
	if deaf := l.Awake(start.Add(4 * time.Second)); deaf != 3800*time.Millisecond {
		t.Fatalf("Awake after 4s = %s, want 3.8s not counted", deaf)
	}
	if due := l.Due(start.Add(8200 * time.Millisecond)); len(due) != 0 {
		t.Fatalf("3.2s after the grace: %+v, want nothing yet", due)
	}
	if due := l.Due(start.Add(8201 * time.Millisecond)); len(due) != 1 || due[0].To != events.StatusDown {
		t.Fatalf("just past 3.2s after the grace: %+v, want the edge down", due)
	}
}

// TestAControllerTellingItRunsAsOftenAsItDoesIsNeverStalled: whatever the heartbeat interval, the
// watcher's period (stallWatch, at least 1ms) fits four times in StallAfter, so a controller
// that runs on time takes none of its own time for a stall. With heartbeats every 2ms the
// tolerance is 400µs, and a watcher every 1ms found a stall of 600µs each time: a dead edge
// went down 2.5 times later than configured, and the warning was logged forever.
func TestAControllerTellingItRunsAsOftenAsItDoesIsNeverStalled(t *testing.T) {
	for _, interval := range []string{"1ms", "2ms", "10ms", "100ms", "1s"} {
		c, err := config.Parse("test.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    pools: [{name: p, endpoints: [{address: "127.0.0.1:80"}]}]
edges:
  - {name: west, region: w, hostname: west.demo.test, address: 127.0.0.21, heartbeat: {interval: `+interval+`, fall: 3}}
`))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Unix(1700000000, 0)
		l := NewLiveness(c, start)
		every := stallWatch(l)
		l.Awake(start)
		for i := 1; i <= 8; i++ {
			// Each tick up to a period late, as a ticker's may be.
			if deaf := l.Awake(start.Add(time.Duration(i) * 2 * every)); deaf != 0 {
				t.Errorf("interval %s: told every %s (twice the watcher's period), Awake counts %s as a stall; StallAfter %s",
					interval, 2*every, deaf, l.StallAfter())
				break
			}
		}
	}
}

// statusLetter is a status as the timelines of these tests write it.
var statusLetter = map[events.Status]byte{events.StatusUnknown: '?', events.StatusUp: 'U', events.StatusDown: 'D'}

// appendDue does what the shell does with the changes l calls for at now: each is appended to
// STATE, which holds status, and told back to l. It returns the status STATE then holds; a change
// from another status than STATE's fails t.
func appendDue(t *testing.T, l *Liveness, now time.Time, status events.Status) events.Status {
	t.Helper()
	for _, c := range l.Due(now) {
		if c.From != status {
			t.Fatalf("at %s: change from %q, but STATE holds %q", now.Format("15:04:05.000"), c.From, status)
		}
		status = c.To
		l.Recorded("west", status)
	}
	return status
}

// TestAnEdgeIsJudgedByTheLongerOfItsConfiguredAndAnnouncedIntervals: a configuration that
// changes an edge's heartbeat interval reaches the controller and the edge at different moments.
// Shortened at the controller first, the edge's heartbeats still come at the old interval until
// one announces the new one; lengthened at the edge first, they come at the new one before the
// controller knows it. Neither is a missed heartbeat.
func TestAnEdgeIsJudgedByTheLongerOfItsConfiguredAndAnnouncedIntervals(t *testing.T) {
	start := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	fast, err := config.Parse("test.yaml", []byte(strings.Replace(liveDoc, "interval: 1s", "interval: 100ms", 1)))
	if err != nil {
		t.Fatal(err)
	}
	down := func(interval time.Duration) []Change {
		return []Change{{Edge: "west", From: events.StatusUp, To: events.StatusDown, Heartbeat: "hb",
			Reason:     fmt.Sprintf("3 missed heartbeats (interval %s)", interval),
			Thresholds: events.Thresholds{IntervalMS: interval.Milliseconds(), HeartbeatFall: 3}}}
	}
	check := func(l *Liveness, now time.Time, want []Change) {
		t.Helper()
		if got := l.Due(now); !reflect.DeepEqual(got, want) {
			t.Fatalf("due at %s = %+v, want %+v", now.Sub(start), got, want)
		}
	}

	// Shortened to 100ms: the controller has it first.
	l := NewLiveness(liveConfig(t), start)
	l.Heartbeat("west", "hb", time.Second, at(0))
	l.Recorded("west", events.StatusUp)
	l.Reconfigure(fast, at(100))
	check(l, at(1000), nil)
	l.Heartbeat("west", "hb", time.Second, at(1000))
	check(l, at(4200), nil)
	l.Heartbeat("west", "hb", 100*time.Millisecond, at(4200)) // the edge has it now
	check(l, at(4520), nil)
	check(l, at(4521), down(100*time.Millisecond))

	// Lengthened to 1s: the edge has it first.
	l = NewLiveness(fast, start)
	l.Heartbeat("west", "hb", 100*time.Millisecond, at(0))
	l.Recorded("west", events.StatusUp)
	l.Heartbeat("west", "hb", time.Second, at(100))
	check(l, at(3300), nil)
	check(l, at(3301), down(time.Second))
}
