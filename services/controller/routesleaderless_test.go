package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// leaderless is ROUTES as a replica answers its stream info while the stream has no leader
// (nats-server answers from its own store then): its subjects are those the replica holds,
// here none.
type leaderless struct{ jetstream.Stream }

func (l leaderless) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	info, err := l.Stream.Info(ctx, opts...)
	if err != nil {
		return nil, err
	}
	c := *info
	c.Config.Replicas = 3
	c.Cluster = &jetstream.ClusterInfo{Name: "c", Leader: "", Replicas: []*jetstream.PeerInfo{{Name: "n2"}, {Name: "n3"}}}
	c.State.Subjects = nil
	return &c, nil
}

// A list of ROUTES's subjects answered by a replica with no leader may miss routes stored since
// it fell behind: the controller would store them again without a word. It takes the list for
// unread, so that the warning "stored routes unreadable" says so, as when the reads of each
// app's route fail.
func TestASubjectListAnsweredWithoutALeaderIsNotTakenForWhatROUTESHolds(t *testing.T) {
	ns := eventstest.Start(t)
	cfg := eventstest.Config(t, bigEdgeDoc(3))
	first := handDriven(ns, cfg, "controller-1", zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	first.publishRoutes()
	settleRoutes(t, first)
	_, _, err := readPublished(t.Context(), ns.JS, leaderless{ns.Stream(t, events.StreamRoutes)}, cfg)
	if err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("read through a replica with no leader: %v, want an error saying ROUTES has no leader", err)
	}
}
