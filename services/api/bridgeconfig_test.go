package api_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAnAPIStartedWithoutACONFIGConsumerShowsTheActiveVersionAlone: the API starts while no
// consumer of CONFIG can be created (as while a node hangs), and reads CONFIG by direct gets.
// It read every version from the first, as its bridge reads a stream from its first message,
// though it shows only the active one: it parsed each, showed each in turn, and warned that
// version 2, one a newer `detour apply` wrote long ago and replaced since, does not parse. It
// reads the active version alone, as its consumer does.
func TestAnAPIStartedWithoutACONFIGConsumerShowsTheActiveVersionAlone(t *testing.T) {
	ns := eventstest.Start(t)
	ctx := t.Context()
	st, err := ns.JS.Stream(ctx, events.StreamConfig)
	if err != nil {
		t.Fatal(err)
	}
	// CONFIG as created, but allowing one consumer, which the test holds.
	cfg := st.CachedInfo().Config
	cfg.MaxConsumers = 1
	if err := ns.JS.DeleteStream(ctx, events.StreamConfig); err != nil {
		t.Fatal(err)
	}
	if st, err = ns.JS.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(ctx, ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	e, err := events.New(events.TypeConfigApplied, "newer", time.Now(), events.ConfigApplied{Document: doc + "future_field: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, ns.JS, events.SubjectConfigDoc, e); err != nil {
		t.Fatal(err)
	}
	_, active, err := config.Apply(ctx, ns.JS, "v3.yaml", []byte(doc+"# v3\n"), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Name: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	read, err := api.AddToken(path, "viewer", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	srv, err := api.Listen(api.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: toks,
		Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api", srv.Run)
	f := &fixture{ns: ns, srv: srv, url: "http://" + srv.Addr()}
	var s api.Status
	eventstest.Eventually(t, 5*time.Second, func() bool {
		_, body := f.do(t, "GET", "/v1/status", read, "")
		return json.Unmarshal([]byte(body), &s) == nil && s.ConfigVersion == active.Number
	}, "the API to show the active version %d: %d", active.Number, &s.ConfigVersion)
	if n := logs.Count("configuration version not shown: it does not parse"); n != 0 {
		t.Errorf("the API warned %d times of a version it does not show, replaced long ago:\n%s", n, logs.String())
	}
}
