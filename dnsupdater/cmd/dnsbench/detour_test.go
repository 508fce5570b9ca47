package main

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
)

// TestTheControlRunsChangesGoWhereTheServerDoesNotFollow: detour-control is held up as the
// changing run without the server's part, so its changes must be stored by the same JetStream
// and never reach STATE, which the server follows; the changing run's must reach STATE.
func TestTheControlRunsChangesGoWhereTheServerDoesNotFollow(t *testing.T) {
	for _, tc := range []struct {
		aside       bool
		into, never string
	}{
		{aside: true, into: streamAside, never: events.StreamState},
		{aside: false, into: events.StreamState, never: streamAside},
	} {
		h, err := startJetStream(t.Context(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.close)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			flip(ctx, h.js, 8053, &changeFlips{perSecond: 200, aside: tc.aside})
		}()
		eventstest.Eventually(t, 10*time.Second, func() bool { return h.messages(tc.into) >= 3 },
			"aside %v: fewer than 3 changes in %s", tc.aside, tc.into)
		cancel()
		<-done
		if n := h.messages(tc.never); n != 0 {
			t.Errorf("aside %v: %d changes in %s, want none", tc.aside, n, tc.never)
		}
	}
}
