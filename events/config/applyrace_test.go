package config_test

import (
	"context"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// heldSend is JetStream whose first publish waits, once sent for, until release is closed: an
// apply that read the active version, then lost the race to send its own.
type heldSend struct {
	jetstream.JetStream
	sending chan struct{}
	release chan struct{}
	once    bool
}

func (h *heldSend) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if !h.once {
		h.once = true
		close(h.sending)
		<-h.release
	}
	return h.JetStream.PublishMsg(ctx, m, opts...)
}

// Two operators (or a retry beside the first try) apply one document at once without
// --expect-version: both read the same active version and found the document new. Both stored
// it, two versions of one document; the second now finds it stored and stores nothing. Two
// different documents applied at once are both stored, the later on top of the earlier, as
// without --expect-version the last apply wins.
func TestTwoAppliesAtOnceStoreOneDocumentOnce(t *testing.T) {
	for _, c := range []struct {
		name     string
		other    func(v2, v3 string) string
		versions int
		active   func(v2, v3 string) string
	}{
		{"the same document", func(v2, _ string) string { return v2 }, 2, func(v2, _ string) string { return v2 }},
		{"another document", func(_, v3 string) string { return v3 }, 3, func(v2, _ string) string { return v2 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := eventstest.Start(t)
			v2 := strings.Replace(watchDoc, "interval: 1s", "interval: 2s", 1)
			v3 := strings.Replace(watchDoc, "interval: 1s", "interval: 3s", 1)
			if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(watchDoc), config.ApplyOptions{By: "test"}); err != nil {
				t.Fatal(err)
			}
			held := &heldSend{JetStream: ns.JS, sending: make(chan struct{}), release: make(chan struct{})}
			type result struct {
				v   config.Version
				err error
			}
			first := make(chan result, 1)
			go func() {
				_, v, err := config.Apply(t.Context(), held, "v2.yaml", []byte(v2), config.ApplyOptions{By: "alice"})
				first <- result{v, err}
			}()
			<-held.sending
			if _, _, err := config.Apply(t.Context(), ns.JS, "other.yaml", []byte(c.other(v2, v3)), config.ApplyOptions{By: "bob"}); err != nil {
				t.Fatal(err)
			}
			close(held.release)
			r := <-first
			if r.err != nil {
				t.Fatalf("the apply that sent last: %v", r.err)
			}
			h, err := config.History(t.Context(), ns.JS)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != c.versions {
				t.Errorf("history holds %d versions, want %d", len(h), c.versions)
			}
			active, err := config.Active(t.Context(), ns.JS)
			if err != nil || active.Document != c.active(v2, v3) {
				t.Errorf("the active version is %d (%v), want the document applied last", active.Number, err)
			}
			if c.versions == 2 && (!r.v.Unchanged || r.v.Number != active.Number) {
				t.Errorf("the apply that sent last: version %d unchanged=%v, want version %d unchanged", r.v.Number, r.v.Unchanged, active.Number)
			}
		})
	}
}
