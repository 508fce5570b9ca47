package up

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/configfile"
	"github.com/nats-io/nats.go"
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
		watchFile(ctx, js, path, config.CredentialDirs{}, nil, reload, zerolog.New(&logs))
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

// watching writes first to a file of its own, applies it, and runs watchFile on the file until
// the test ends or stop is called; a value on reload is a SIGHUP.
func watching(t *testing.T, js jetstream.JetStream, first []byte, logs *eventstest.Logs) (path string, reload chan struct{}, stop func()) {
	t.Helper()
	path, reload = filepath.Join(t.TempDir(), "detour.yaml"), make(chan struct{})
	if err := os.WriteFile(path, first, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.Apply(context.Background(), js, path, first, config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchFile(ctx, js, path, config.CredentialDirs{}, first, reload, zerolog.New(logs))
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return path, reload, stop
}

const shopDoc = "zones: [{name: demo.test}]\napps:\n  - name: shop\n    fqdn: shop.demo.test\n" +
	"    pools: [{name: main, endpoints: [{address: \"127.0.0.1:8081\"}]}]\n"

// startForShop starts JetStream with the streams shopDoc's bounds call for.
func startForShop(t *testing.T) *eventstest.Server {
	t.Helper()
	srv := eventstest.Start(t)
	if err := events.EnsureStreams(context.Background(), srv.JS, eventstest.Config(t, shopDoc).StreamOptions(1)); err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestAFileVersionLargerThanNATSTakesIsRefusedNotTriedAgain(t *testing.T) {
	// A message larger than the server's max_payload is refused by the client, every time:
	// before, it was taken for NATS not answering and tried again every 30 s for ever.
	srv := startForShop(t)
	var logs eventstest.Logs
	path, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)

	big := []byte(shopDoc + "# " + strings.Repeat("x", int(srv.Conn.MaxPayload())) + "\n")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the big version was handled
	const refusedLine, retryLine = "configuration file refused by JetStream; nothing applied", "configuration file not applied: NATS did not take it; trying again"
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(refusedLine)+logs.Count(retryLine) > 0 }, "the big version tried")
	if n := logs.Count(retryLine); n > 0 {
		t.Errorf("a version NATS can never take is to be tried again: %s", logs.String()[strings.LastIndex(logs.String(), `{"level"`):])
	}
	if n := logs.Count(refusedLine); n != 1 {
		t.Errorf("%d lines tell the version was refused, want 1", n)
	}
}

func TestAFileVersionLargerThanNATSTakesChangesNoStreamsBounds(t *testing.T) {
	// Refused whole: before, the bounds it sets were given to PROBES, then the document was
	// refused for its size, and PROBES kept bounds no version had.
	srv := startForShop(t)
	var logs eventstest.Logs
	path, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)
	probes := func() jetstream.StreamConfig {
		t.Helper()
		s, err := srv.JS.Stream(context.Background(), events.StreamProbes)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	before := probes()

	big := []byte(shopDoc + "streams:\n  probes: {max_age: 2h, max_bytes: 96MiB}\n# " + strings.Repeat("x", int(srv.Conn.MaxPayload())) + "\n")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the big version was handled
	if after := probes(); after.MaxAge != before.MaxAge || after.MaxBytes != before.MaxBytes {
		t.Errorf("after a file version NATS cannot take, PROBES keeps %s within %d bytes, want %s within %d as before",
			after.MaxAge, after.MaxBytes, before.MaxAge, before.MaxBytes)
	}
	if v, err := config.Active(context.Background(), srv.JS); err != nil || v.Document != shopDoc {
		t.Errorf("the active version is not the first file's (%v)", err)
	}
}

func TestStoppingWhileAFileVersionIsAppliedLogsNoFailure(t *testing.T) {
	// Before, the attempt cut short by the stop was logged as an error, one to try again.
	srv := startForShop(t)
	js := &eventstest.Electing{JetStream: srv.JS, StreamName: events.StreamConfig, On: new(atomic.Bool)}
	var logs eventstest.Logs
	path, reload, stop := watching(t, js, []byte(shopDoc), &logs)

	js.On.Store(true) // CONFIG does not answer
	if err := os.WriteFile(path, []byte(shopDoc+"# changed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	eventstest.Eventually(t, 5*time.Second, func() bool { return js.Refused.Load() > 0 }, "the new version being applied")
	stop()
	if strings.Contains(logs.String(), `"level":"error"`) {
		t.Errorf("stopping logged a failure: %s", logs.String())
	}
}

func TestAFileVersionIsAppliedWhenTheCONFIGStreamWasRemoved(t *testing.T) {
	// Its streams are made first, as `detour apply` makes them. Before, the read of the active
	// version came first, failed for want of the stream, and was tried again for ever.
	srv := startForShop(t)
	var logs eventstest.Logs
	path, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)

	if err := srv.JS.DeleteStream(context.Background(), events.StreamConfig); err != nil {
		t.Fatal(err)
	}
	second := []byte(shopDoc + "# changed\n")
	if err := os.WriteFile(path, second, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		v, err := config.Active(context.Background(), srv.JS)
		return err == nil && v.Document == string(second)
	}, "the changed file applied, its CONFIG stream made again")
}

// answering is a JetStream client whose publishes to CONFIG fail with the API error in err while
// it is set: a refusal, or a cluster's "not now".
type answering struct {
	jetstream.JetStream
	err atomic.Pointer[jetstream.APIError]
}

func (a *answering) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := a.err.Load(); err != nil && strings.HasPrefix(m.Subject, "detour.config.") {
		return nil, err
	}
	return a.JetStream.PublishMsg(ctx, m, opts...)
}

func TestAReloadAppliesTheFileAgainAfterJetStreamRefusedIt(t *testing.T) {
	// A refusal's cause may be outside the file (a reservation JetStream could not make then):
	// the operator removes it and sends SIGHUP. Before, the reload logged "unchanged" and the
	// file stayed unapplied until it was edited.
	srv := startForShop(t)
	js := &answering{JetStream: srv.JS}
	var logs eventstest.Logs
	path, reload, _ := watching(t, js, []byte(shopDoc), &logs)

	js.err.Store(&jetstream.APIError{Code: 400, ErrorCode: 10047, Description: "insufficient storage resources available"})
	second := []byte(shopDoc + "# changed\n")
	if err := os.WriteFile(path, second, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the refused version was handled
	if n := logs.Count("configuration file refused by JetStream; nothing applied"); n != 1 {
		t.Fatalf("%d lines tell the version was refused, want 1: %s", n, logs.String())
	}
	js.err.Store(nil)
	reload <- struct{}{}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		v, err := config.Active(context.Background(), srv.JS)
		return err == nil && v.Document == string(second)
	}, "the refused file applied at the reload that followed, unchanged")
}

func TestAReloadMakesTheFileActiveAgainAfterDetourApplyReplacedIt(t *testing.T) {
	srv := startForShop(t)
	var logs eventstest.Logs
	_, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)

	other := shopDoc + "# applied by hand\n"
	if _, _, err := config.Apply(context.Background(), srv.JS, "other.yaml", []byte(other), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	eventstest.Eventually(t, 5*time.Second, func() bool {
		v, err := config.Active(context.Background(), srv.JS)
		return err == nil && v.Document == shopDoc
	}, "the file's version active again after the reload")
	reload <- struct{}{}
	reload <- struct{}{} // returns once the second reload was handled
	if n := logs.Count("configuration file unchanged: it is the active version"); n < 1 {
		t.Errorf("a reload of the active version is not logged as unchanged: %s", logs.String())
	}
	if versions, err := config.History(context.Background(), srv.JS); err != nil || len(versions) != 3 {
		t.Errorf("%d versions stored (%v), want 3: the file, the hand-applied one, the file again", len(versions), err)
	}
}

func TestAFileVersionIsTriedAgainWhileTheClusterCannotTakeIt(t *testing.T) {
	// Errors a cluster returns while electing or short of nodes have statuses other than 503;
	// before, they were taken for refusals and the version was dropped (events.Busy). A 503 is
	// tried again whatever it says, JetStream off for the account too, as it always was, and so
	// is a stream offline until its servers are upgraded (10194, for a moment in a rolling
	// upgrade), though the API answers both 502 (events.UntilOperator): the watcher has no one
	// to answer, and an operator who fixes the servers finds the file applied.
	for _, c := range []struct{ status, code int }{{500, 10005}, {500, 10009}, {500, 10041}, {500, 10118}, {500, 10194},
		{503, 10008}, {503, 10039}, {503, 10023}} {
		code := c.code
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			srv := startForShop(t)
			js := &answering{JetStream: srv.JS}
			var logs eventstest.Logs
			path, _, _ := watching(t, js, []byte(shopDoc), &logs)

			js.err.Store(&jetstream.APIError{Code: c.status, ErrorCode: jetstream.ErrorCode(code), Description: "cluster busy"})
			second := []byte(shopDoc + "# changed\n")
			if err := os.WriteFile(path, second, 0o600); err != nil {
				t.Fatal(err)
			}
			const retryLine = "configuration file not applied: NATS did not take it; trying again"
			eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count(retryLine) > 0 }, "the version tried and failed")
			if strings.Contains(logs.String(), "refused") {
				t.Fatalf("the version was taken as refused: %s", logs.String())
			}
			js.err.Store(nil)
			eventstest.Eventually(t, 5*time.Second, func() bool {
				v, err := config.Active(context.Background(), srv.JS)
				return err == nil && v.Document == string(second)
			}, "the version applied once the cluster took it, the file unchanged")
		})
	}
}

func TestARefusedReloadLogsTheProblemsDetourCheckPrintsWithTheirLines(t *testing.T) {
	srv := startForShop(t)
	var logs eventstest.Logs
	path, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)
	for _, c := range []struct{ name, doc, want string }{
		{"a bad address", strings.Replace(shopDoc, `"127.0.0.1:8081"`, `"127.0.0.1"`, 1),
			":5: apps[0].pools[0].endpoints[0].address: "},
		{"an unreadable webhook key", shopDoc + "alerts:\n  - name: oncall\n    on: [pool_down]\n" +
			"    webhooks: [{url: \"https://hooks.example.com/x\", secret_file: /nonexistent/hook.key}]\n",
			":9: alerts[0].webhooks[0]: "},
	} {
		before := len(strings.Split(logs.String(), "\n"))
		if err := os.WriteFile(path, []byte(c.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		reload <- struct{}{}
		reload <- struct{}{} // returns once the file was handled
		if v, err := config.Active(context.Background(), srv.JS); err != nil || v.Document != shopDoc {
			t.Errorf("%s: the reload applied the file (%v)", c.name, err)
		}
		_, err := configfile.Check(path, []byte(c.doc))
		if err == nil {
			err = configfile.CheckSecrets(path, []byte(c.doc), eventstest.Config(t, c.doc), config.CredentialDirs{})
		}
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: detour check finds %v, want problems", c.name, err)
		}
		var got struct {
			Problems []string `json:"problems"`
		}
		var line string
		for _, l := range strings.Split(logs.String(), "\n")[before-1:] {
			if strings.Contains(l, "configuration file refused; nothing applied") {
				line = l
			}
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%s: log line %q: %v", c.name, line, err)
		}
		if !reflect.DeepEqual(got.Problems, ce.Located()) || len(got.Problems) == 0 || !strings.HasPrefix(got.Problems[0], path+c.want) {
			t.Errorf("%s: the reload logged problems %q; want what detour check prints, %q, the first starting %q", c.name, got.Problems, ce.Located(), path+c.want)
		}
	}
}

func TestAReloadOfAFileDetourCheckWarnsAboutAppliesItAndLogsTheWarningAsCheckPrintsIt(t *testing.T) {
	srv := startForShop(t)
	var logs eventstest.Logs
	path, reload, _ := watching(t, srv.JS, []byte(shopDoc), &logs)
	// Two failover pools on one IP: valid, but a failover between them changes no answer.
	doc := shopDoc + "      - name: backup\n        endpoints: [{address: \"127.0.0.1:8082\"}, {address: \"127.0.0.2:8082\"}]\n"
	doc = strings.Replace(doc, "    pools: [{name: main, endpoints: [{address: \"127.0.0.1:8081\"}]}]\n",
		"    pools:\n      - name: main\n        endpoints: [{address: \"127.0.0.1:8081\"}]\n", 1)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	reload <- struct{}{} // returns once the file was handled
	if v, err := config.Active(context.Background(), srv.JS); err != nil || v.Document != doc {
		t.Fatalf("the reload did not apply the file (%v)", err)
	}
	want := configfile.Warnings(path, []byte(doc), eventstest.Config(t, doc))
	if len(want) != 1 || !strings.HasPrefix(want[0], path+":8: warning: apps[0].pools[1]: shares 127.0.0.1 with pool \"main\"") {
		t.Fatalf("detour check warns %q; want one warning at line 8 about the shared IP", want)
	}
	var got []string
	for _, l := range strings.Split(logs.String(), "\n") {
		var line struct {
			Level   string `json:"level"`
			Problem string `json:"problem"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Message == "configuration valid but probably not meant" {
			if line.Level != "warn" {
				t.Errorf("logged at level %q, want warn: %s", line.Level, l)
			}
			got = append(got, line.Problem)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the reload logged warnings %q; want what detour check prints, %q\nlogs:\n%s", got, want, logs.String())
	}
}
