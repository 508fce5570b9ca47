package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

func TestAFailingPartIsLoggedAtOnceAndStopsTheProcessWithAnError(t *testing.T) {
	for _, c := range []struct {
		name    string
		stop    error // what the alerts part returns on its own
		wantErr string
	}{
		{"a part failing", errors.New("webhook sender: out of memory"), "alerts: webhook sender: out of memory"},
		{"a part returning without an error", nil, "alerts: stopped unexpectedly"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs eventstest.Logs
			log := zerolog.New(&logs)
			var loggedBeforeMainStopped bool
			// main runs until it is stopped, as the controller does.
			main := func(ctx context.Context) error {
				<-ctx.Done()
				loggedBeforeMainStopped = strings.Contains(logs.String(), `"part":"alerts"`)
				return nil
			}
			api := part{"api", func(ctx context.Context) error { <-ctx.Done(); return nil }}
			alerts := part{"alerts", func(context.Context) error { return c.stop }}
			err := runParts(context.Background(), log, main, api, alerts)
			if err == nil || err.Error() != c.wantErr {
				t.Fatalf("runParts = %v, want %s (a non-zero exit)", err, c.wantErr)
			}
			if !loggedBeforeMainStopped {
				t.Errorf("the failure was not logged before the controller was stopped; logs:\n%s", logs.String())
			}
			if got := logs.String(); !strings.Contains(got, `"level":"error"`) || !strings.Contains(got, c.wantErr) {
				t.Errorf("logs do not say at error level that %s:\n%s", c.wantErr, got)
			}
		})
	}
}

func TestStoppingTheProcessIsNoPartsFailure(t *testing.T) {
	var logs eventstest.Logs
	ctx, cancel := context.WithCancel(context.Background())
	main := func(ctx context.Context) error { cancel(); <-ctx.Done(); return nil }
	api := part{"api", func(ctx context.Context) error { <-ctx.Done(); return nil }}
	if err := runParts(ctx, zerolog.New(&logs), main, api); err != nil {
		t.Fatalf("runParts = %v after a stop, want nil (exit 0)", err)
	}
	if logs.String() != "" {
		t.Errorf("a stop logged a failure:\n%s", logs.String())
	}
}

func TestAMainFailureStopsThePartsAndIsReturned(t *testing.T) {
	stopped := make(chan struct{})
	main := func(context.Context) error { return errors.New("streams unavailable") }
	api := part{"api", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }}
	err := runParts(context.Background(), zerolog.Nop(), main, api)
	if err == nil || err.Error() != "streams unavailable" {
		t.Fatalf("runParts = %v, want the controller's error", err)
	}
	select {
	case <-stopped:
	default:
		t.Error("runParts returned before the api part stopped")
	}
}
