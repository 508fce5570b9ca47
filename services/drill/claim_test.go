package drill

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

func TestOfTwoDrillsClaimingOneAppAtOnceExactlyOneWinsAndTheOtherIsToldWhich(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	conflicts := 0
	for i := range 50 {
		start := make(chan struct{})
		var wg sync.WaitGroup
		held := make([][]claim, 2)
		errs := make([]error, 2)
		ids := []string{"a-" + string(rune('a'+i%26)) + "x", "b-" + string(rune('a'+i%26)) + "x"}
		for r := range 2 {
			wg.Go(func() {
				<-start
				held[r], errs[r] = claimApps(ctx, srv.JS, events.DrillClaim{ID: ids[r], Name: "n" + ids[r][:1], By: "runner-" + ids[r][:1],
					Until: time.Now().Add(time.Minute)}, []string{"shop", "www"})
			})
		}
		close(start)
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("iteration %d: both or neither claimed the apps: %v, %v", i, errs[0], errs[1])
		}
		winner, loser := 0, 1
		if errs[0] != nil {
			winner, loser = 1, 0
		}
		err := errs[loser]
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "app shop") && !strings.Contains(err.Error(), "app www") {
			t.Fatalf("iteration %d: the loser's error %q does not refuse naming the app", i, err)
		}
		if strings.Contains(err.Error(), "at the same instant") {
			conflicts++
		} else if !strings.Contains(err.Error(), "drill "+ids[winner]) {
			t.Fatalf("iteration %d: the loser's error %q does not name drill %s", i, err, ids[winner])
		}
		// The loser released what it took: the winner holds both apps, then releases them.
		s := srv.Stream(t, events.StreamDrills)
		for _, app := range []string{"shop", "www"} {
			h, _, err := holder(ctx, srv.JS, s, app, time.Now())
			if err != nil || h == nil || h.ID != ids[winner] {
				t.Fatalf("iteration %d: app %s is held by %+v (%v), want drill %s", i, app, h, err, ids[winner])
			}
		}
		releaseClaims(ctx, srv.JS, "runner", held[winner])
		for _, app := range []string{"shop", "www"} {
			if h, _, err := holder(ctx, srv.JS, s, app, time.Now()); err != nil || h != nil {
				t.Fatalf("iteration %d: app %s still held by %+v (%v) after the release", i, app, h, err)
			}
		}
	}
	t.Logf("%d of 50 races were settled by the expected-sequence check", conflicts)
}

func TestAClaimIsFreedWhenItsDrillRollsBackOrNeverStarts(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	s := srv.Stream(t, events.StreamDrills)
	if _, err := claimApps(ctx, srv.JS, events.DrillClaim{ID: "gone-1", By: "x", Until: time.Now().Add(-time.Second)}, []string{"shop"}); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := holder(ctx, srv.JS, s, "shop", time.Now()); h != nil {
		t.Errorf("a claim whose drill never started past its until still holds shop: %+v", h)
	}
	if _, err := claimApps(ctx, srv.JS, events.DrillClaim{ID: "back-1", By: "x", Until: time.Now().Add(time.Minute)}, []string{"shop"}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{events.TypeDrillStarted, events.TypeDrillRolledBack} {
		var data any = events.DrillStarted{ID: "back-1", Apps: []string{"shop"}}
		if typ == events.TypeDrillRolledBack {
			data = events.DrillRolledBack{By: "controller-1", Reason: "runner_lost"}
		}
		if h, _, _ := holder(ctx, srv.JS, s, "shop", time.Now()); h == nil || h.ID != "back-1" {
			t.Fatalf("before %s shop is held by %+v, want back-1", typ, h)
		}
		if _, err := publish(ctx, srv.JS, events.DrillSubject("back-1"), typ, "x", data, storeWithin); err != nil {
			t.Fatal(err)
		}
	}
	if h, _, _ := holder(ctx, srv.JS, s, "shop", time.Now()); h != nil {
		t.Errorf("a claim whose drill a controller rolled back still holds shop: %+v", h)
	}
}

func TestADrillThatLosesTheRaceBetweenReadingAndClaimingAnAppIsRefusedNamingTheWinner(t *testing.T) {
	srv := eventstest.Start(t)
	ctx := context.Background()
	t.Cleanup(func() { claimRead = func(string) {} })
	var wonErr error
	claimRead = func(app string) {
		claimRead = func(string) {} // the winner claims without interference
		_, wonErr = claimApps(ctx, srv.JS, events.DrillClaim{ID: "fast-1", Name: "fast", By: "bob@b", Until: time.Now().Add(time.Minute)}, []string{app})
	}
	_, err := claimApps(ctx, srv.JS, events.DrillClaim{ID: "slow-1", Name: "slow", By: "alice@a", Until: time.Now().Add(time.Minute)}, []string{"shop"})
	if wonErr != nil {
		t.Fatalf("the drill that claimed first: %v", wonErr)
	}
	want := "app shop is held by drill fast-1 (fast, by bob@b) until it rolls back"
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("the drill that read first and appended second: %v, want refused with %q", err, want)
	}
}
