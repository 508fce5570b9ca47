package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// recreatingDrills is the API's JetStream client, under which DRILLS is deleted and created again,
// empty, as a request opens it the second time: between the rollback's look at the API's fold of
// DRILLS and its append (an operator's nats stream rm, then the controller making it again).
type recreatingDrills struct {
	jetstream.JetStream
	admin  jetstream.JetStream
	mu     sync.Mutex
	opened int
}

func (r *recreatingDrills) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if name == events.StreamDrills && ctx.Value(http.ServerContextKey) != nil { // a request's, not the fold's
		r.mu.Lock()
		r.opened++
		second := r.opened == 2
		r.mu.Unlock()
		if second {
			st, err := r.admin.Stream(ctx, name)
			if err != nil {
				return nil, err
			}
			if err := r.admin.DeleteStream(ctx, name); err != nil {
				return nil, err
			}
			if _, err := r.admin.CreateStream(ctx, st.CachedInfo().Config); err != nil {
				return nil, err
			}
		}
	}
	return r.JetStream.Stream(ctx, name)
}

// A rollback of a drill that is no longer in force when the rollback looks it up to append after
// it (DRILLS was created again, empty, since the API checked it) is answered 404 naming the
// drill, as one of a drill never started is: it was answered 502, as if the controller had
// failed.
func TestARollbackOfADrillGoneSinceItWasLookedUpIsAnswered404(t *testing.T) {
	base := start(t)
	base.drillEvent(t, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	if code, body := base.do(t, "POST", "/v1/drills/nope/rollback", base.write, ""); code != http.StatusNotFound || !strings.Contains(body, "drill nope is not in force") {
		t.Errorf("rollback of a drill never started: %d %s, want 404 naming it", code, body)
	}
	srv, err := api.Listen(api.Options{JS: &recreatingDrills{JetStream: base.ns.JS, admin: base.ns.JS}, Config: eventstest.Config(t, doc),
		Addr: "127.0.0.1:0", Tokens: base.tokens, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-drills-recreated", srv.Run)
	f := *base
	f.srv, f.url = srv, "http://"+srv.Addr()
	if code, body := f.do(t, "POST", "/v1/drills/d2/rollback", f.write, ""); code != http.StatusNotFound || !strings.Contains(body, "drill d2 is not in force") {
		t.Errorf("rollback of a drill gone since it was looked up: %d %s, want 404 naming the drill", code, body)
	}
}
