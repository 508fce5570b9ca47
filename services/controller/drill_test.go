package controller

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func TestADrilledEdgeIsSeenDeadWhateverItsHeartbeatsSay(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLiveness(liveConfig(t), t0)
	l.Heartbeat("west", "hb-1", 0, t0)
	l.Recorded("west", events.StatusUp)

	l.Simulate("west", "drill d1: simulated failure of edge west")
	l.Heartbeat("west", "hb-2", 0, t0.Add(time.Second))
	due := l.Due(t0.Add(time.Second))
	if len(due) != 1 || due[0].To != events.StatusDown || due[0].Reason != "drill d1: simulated failure of edge west" {
		t.Fatalf("with the drill in force: %+v, want the edge down with the drill's reason", due)
	}
	l.Recorded("west", events.StatusDown)
	if due := l.Due(t0.Add(2 * time.Second)); len(due) != 0 {
		t.Errorf("a drilled edge recorded down changes again: %+v", due)
	}

	l.Simulate("west", "")
	l.Heartbeat("west", "hb-3", 0, t0.Add(2*time.Second))
	due = l.Due(t0.Add(2 * time.Second))
	if len(due) != 1 || due[0].To != events.StatusUp || due[0].Reason != "heartbeats resumed" {
		t.Errorf("after the drill: %+v, want the edge up as its heartbeats say", due)
	}
}
