package up

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// TestARoleThatFailsIsLoggedAtOnceWhileTheOthersAreStillStopping holds one role in its shutdown
// until the failure of another is in the log: before, the failure reached the operator only
// once every role had stopped, which took as long as the slowest one.
func TestARoleThatFailsIsLoggedAtOnceWhileTheOthersAreStillStopping(t *testing.T) {
	var logs eventstest.Logs
	g := newGroup(context.Background(), zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))))
	release := make(chan struct{})
	stopping := make(chan struct{})
	g.Go("dns", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopping)
		<-release // a slow shutdown
		return nil
	})
	g.Go("prober us-west", func(context.Context) error { return errors.New("open membership bucket: boom") })

	eventstest.Eventually(t, 5*time.Second, func() bool {
		return logs.Count("role failed; stopping the others") == 1
	}, "the failure logged while dns is still stopping")
	line := logs.String()
	for _, want := range []string{`"level":"error"`, `"role":"prober us-west"`, `"error":"open membership bucket: boom"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %s", line, want)
		}
	}
	select {
	case <-stopping:
	case <-time.After(5 * time.Second):
		t.Fatal("dns was not asked to stop after the prober failed")
	}
	close(release)
	if err := g.Wait(); err == nil || err.Error() != "prober us-west: open membership bucket: boom" {
		t.Errorf("Wait = %v, want the prober's failure named", err)
	}
	if n := strings.Count(logs.String(), `"level":"error"`); n != 1 {
		t.Errorf("%d failures logged, want 1 (dns stopped cleanly): %s", n, logs.String())
	}
}

func TestARoleThatReturnsOnItsOwnStopsTheOthersAndIsNamed(t *testing.T) {
	var logs eventstest.Logs
	g := newGroup(context.Background(), zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))))
	g.Go("decider", func(ctx context.Context) error { <-ctx.Done(); return nil })
	g.Go("controller", func(context.Context) error { return nil })
	err := g.Wait()
	if err == nil || err.Error() != "controller: stopped on its own" {
		t.Errorf("Wait = %v, want controller: stopped on its own", err)
	}
	if !strings.Contains(logs.String(), `"role":"controller"`) {
		t.Errorf("log %q does not name the controller", logs.String())
	}
}

func TestRolesStoppedWithTheirContextAreNoFailure(t *testing.T) {
	var logs eventstest.Logs
	ctx, cancel := context.WithCancel(context.Background())
	g := newGroup(ctx, zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))))
	for _, name := range []string{"dns", "decider"} {
		g.Go(name, func(ctx context.Context) error { <-ctx.Done(); return nil })
	}
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
	if n := strings.Count(logs.String(), `"level":"error"`); n != 0 {
		t.Errorf("%d failures logged, want none: %s", n, logs.String())
	}
}
