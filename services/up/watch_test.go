package up

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// unreachable is a JetStream client that gets no answer while down is set: opening a stream
// times out, as while the stream elects its leader or the NATS server is away.
type unreachable struct {
	jetstream.JetStream
	down atomic.Bool
}

func (u *unreachable) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if u.down.Load() {
		return nil, context.DeadlineExceeded
	}
	return u.JetStream.Stream(ctx, name)
}

// TestAFileVersionNATSCouldNotTakeIsAppliedOnceItAnswersWithoutTheFileChanging: before, a
// change made while a stream elected its leader was dropped until the file changed again.
func TestAFileVersionNATSCouldNotTakeIsAppliedOnceItAnswersWithoutTheFileChanging(t *testing.T) {
	srv := eventstest.Start(t)
	js := &unreachable{JetStream: srv.JS}
	doc := func(addr string) []byte {
		return []byte("zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n" +
			"    pools: [{name: main, endpoints: [{address: \"" + addr + "\"}]}]\n")
	}
	first, second := doc("127.0.0.1:8081"), doc("127.0.0.1:8082")
	path := filepath.Join(t.TempDir(), "detour.yaml")
	if err := os.WriteFile(path, first, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{})
	var logs eventstest.Logs
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchFile(ctx, js, path, nil, reload, zerolog.New(&logs))
	}()
	defer func() { cancel(); <-done }()
	reload <- struct{}{}
	reload <- struct{}{} // returns once the first version was handled
	if v, err := config.Active(ctx, srv.JS); err != nil || v.Document != string(first) {
		t.Fatalf("the first file version is not active (%v)", err)
	}

	js.down.Store(true)
	if err := os.WriteFile(path, second, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the second version was tried, and failed
	if v, _ := config.Active(ctx, srv.JS); v.Document != string(first) {
		t.Fatal("the second version was applied while NATS did not answer")
	}
	if !strings.Contains(logs.String(), "trying again") {
		t.Errorf("the failed attempt was not logged as one to try again: %s", logs.String())
	}
	js.down.Store(false)
	eventstest.Eventually(t, 5*time.Second, func() bool {
		v, err := config.Active(ctx, srv.JS)
		return err == nil && v.Document == string(second)
	}, "the second file version applied once NATS answered, the file unchanged")
	versions, err := config.History(ctx, srv.JS)
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 2 {
		t.Errorf("%d versions stored, want 2: each file version once", len(versions))
	}
}
