package config_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// An apply whose answer does not come within its bound, once the version was sent, may have
// stored it: the error says so (ErrMaybeStored), where it read as a plain failure and a retry
// stored the document again as a new version. The retry now finds it stored and stores nothing.
// An apply whose bound ran out before it sent anything does not say it may have stored it.
func TestAnApplyAnsweredAfterItsBoundMayHaveStoredTheVersionAndARetryStoresNothing(t *testing.T) {
	ns := eventstest.Start(t)
	v2 := strings.Replace(watchDoc, "interval: 1s", "interval: 2s", 1)
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}

	// No answer comes back over the link: the bound runs out as the active version is read.
	link := eventstest.NewSlowLink(t, ns.URL)
	_, slow := eventstest.ConnectJS(t, link.URL)
	link.Delay(0, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	_, _, err := config.Apply(ctx, slow, "v2.yaml", []byte(v2), config.ApplyOptions{By: "test"})
	cancel()
	if err == nil || errors.Is(err, config.ErrMaybeStored) || strings.Contains(err.Error(), "may have been stored") {
		t.Fatalf("apply bounded before anything was sent: %v, want an error that does not say the version may be stored", err)
	}

	// CONFIG stores what it is sent but answers nothing: the answer of the version sent never comes.
	answers := func(ack bool) {
		t.Helper()
		st, err := ns.JS.Stream(t.Context(), events.StreamConfig)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		c.NoAck = !ack
		if _, err := ns.JS.UpdateStream(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	answers(false)
	ctx, cancel = context.WithTimeout(t.Context(), time.Second)
	_, _, err = config.Apply(ctx, ns.JS, "v2.yaml", []byte(v2), config.ApplyOptions{By: "test"})
	cancel()
	if !errors.Is(err, config.ErrMaybeStored) || !strings.Contains(err.Error(), "may have been stored") {
		t.Fatalf("apply whose answer did not come: %v, want it to say the version may have been stored", err)
	}
	answers(true)
	active, err := config.Active(t.Context(), ns.JS)
	if err != nil || active.Document != v2 {
		t.Fatalf("the active version is %d (%v), want the version sent", active.Number, err)
	}

	_, again, err := config.Apply(t.Context(), ns.JS, "v2.yaml", []byte(v2), config.ApplyOptions{By: "test"})
	if err != nil || !again.Unchanged || again.Number != active.Number {
		t.Fatalf("retry: version %d unchanged=%v, %v; want version %d unchanged", again.Number, again.Unchanged, err, active.Number)
	}
	if h, err := config.History(t.Context(), ns.JS); err != nil || len(h) != 2 {
		t.Errorf("history holds %d versions (%v), want 2", len(h), err)
	}
}
