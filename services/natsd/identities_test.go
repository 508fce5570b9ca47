package natsd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	mdns "github.com/miekg/dns"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// deployment runs nats-server in process with deployments/nats/accounts.conf, the users and
// permissions of the compose cluster, on a random loopback port.
type deployment struct {
	t   *testing.T
	url string
}

func startDeployment(t *testing.T) *deployment {
	t.Helper()
	return startDeploymentWith(t, "")
}

// startDeploymentWith is startDeployment with settings added to the server's jetstream block
// ("max_memory_store: 64MB").
func startDeploymentWith(t *testing.T, jetstream string) *deployment {
	t.Helper()
	accounts, err := os.ReadFile(filepath.Join("..", "..", "deployments", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream {store_dir: %q\n%s}\ninclude ./accounts.conf\n", filepath.Join(dir, "js"), jetstream)
	for name, body := range map[string][]byte{"nats.conf": []byte(conf), "accounts.conf": accounts} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("deployments/nats/accounts.conf: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready in 10s")
	}
	t.Cleanup(s.Shutdown)
	return &deployment{t: t, url: s.ClientURL()}
}

// client is one user's connection; violations collects the server's permission errors.
type client struct {
	js jetstream.JetStream
	nc *nats.Conn

	mu         sync.Mutex
	violations []string
}

func (d *deployment) as(user string) *client {
	d.t.Helper()
	c := &client{}
	nc, err := nats.Connect(d.url, nats.UserInfo(user, user+"-demo"), nats.Name(user),
		nats.CustomInboxPrefix(events.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.violations = append(c.violations, err.Error())
		}))
	if err != nil {
		d.t.Fatalf("connect as %s: %v", user, err)
	}
	d.t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		d.t.Fatal(err)
	}
	return c
}

func (c *client) errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

// deniedPublish asserts that user cannot publish to subject, and that nothing was stored there.
func (d *deployment) deniedPublish(c *client, user, stream, subject string) {
	d.t.Helper()
	e, err := events.New(events.TypeEndpointDown, user, time.Now(), map[string]string{"forged": "yes"})
	if err != nil {
		d.t.Fatal(err)
	}
	// As a core publish: JetStream would store it and acknowledge, were it let through.
	if err := c.nc.Publish(subject, e.Encode()); err != nil {
		d.t.Fatal(err)
	}
	var seen []string
	eventstest.Eventually(d.t, 2*time.Second, func() bool {
		seen = c.errors()
		for _, v := range seen {
			if strings.Contains(v, "Permissions Violation for Publish to \""+subject+"\"") {
				return true
			}
		}
		return false
	}, "%s: no permissions violation for %s (errors %q)", user, subject, &seen)
	op := d.as("operator")
	st, err := op.js.Stream(context.Background(), stream)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(context.Background(), subject); !errors.Is(err, jetstream.ErrMsgNotFound) {
		d.t.Errorf("%s's message on %s is in %s (err %v)", user, subject, stream, err)
	}
}

func (d *deployment) ensureStreams() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, d.as("operator").js, events.StreamOptions{Memory: true}); err != nil {
		d.t.Fatal(err)
	}
}

func TestDeploymentIdentitiesAProberCannotPublishForAnotherRegion(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	west := d.as("prober-us-west-1")
	d.deniedPublish(west, "prober-us-west-1", events.StreamProbes, events.ProbeSubject("us-east", "shop", "east", "e1"))
	d.deniedPublish(west, "prober-us-west-1", events.StreamProbes, events.ProbeBatchSubject("us-east", "p1"))
	ctx := context.Background()
	if _, err := events.Publish(ctx, west.js, events.ProbeSubject("us-west", "shop", "west", "w1"), mustEvent(t)); err != nil {
		t.Errorf("prober-us-west cannot publish its own region's result: %v", err)
	}
	kv, err := west.js.KeyValue(ctx, events.BucketProbers)
	if err != nil {
		t.Fatalf("prober-us-west opens the membership bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "us-west.p1", []byte("{}")); err != nil {
		t.Errorf("prober-us-west cannot write its own membership: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := kv.Put(cctx, "us-east.p1", []byte("{}")); err == nil {
		t.Error("prober-us-west wrote a us-east membership key")
	}
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer wcancel()
	if _, err := kv.Watch(wctx, "us-east.*"); err == nil {
		t.Error("prober-us-west watches us-east's members")
	}
}

func TestDeploymentIdentitiesAnEdgeCannotHeartbeatAsAnotherEdge(t *testing.T) {
	d := startDeployment(t)
	heard := make(chan string, 16)
	ctrl := d.as("controller-1").nc
	sub, err := ctrl.Subscribe("detour.heartbeat.>", func(m *nats.Msg) { heard <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// The subscription must be in place at the server before edge-west, on a connection of its
	// own, publishes: a heartbeat sent before would reach no one.
	if err := ctrl.Flush(); err != nil {
		t.Fatal(err)
	}
	west := d.as("edge-west")
	if err := west.nc.Publish("detour.heartbeat.edge-east", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := west.nc.Publish("detour.heartbeat.edge-west", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-heard:
		if got != "detour.heartbeat.edge-west" {
			t.Errorf("the controller heard %s first, want only edge-west's own heartbeat", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the controller heard no heartbeat in 5 s, want edge-west's own")
	}
	eventstest.Eventually(t, 2*time.Second, func() bool { return len(west.errors()) > 0 }, "no permissions violation reported to edge-west")
	select {
	case got := <-heard:
		t.Errorf("the controller also heard %s", got)
	default:
	}
}

func TestDeploymentIdentitiesOnlyTheDeciderAppendsEndpointAndPoolTransitionsAndNoRoleButTheControllerOverrides(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	for _, user := range []string{"controller-1", "dns-1", "prober-us-west-1", "edge-west"} {
		c := d.as(user)
		d.deniedPublish(c, user, events.StreamState, events.EndpointStateSubject("shop", "west", "w1"))
		d.deniedPublish(c, user, events.StreamState, events.PoolStateSubject("shop", "west"))
	}
	dec := d.as("decider-1")
	d.deniedPublish(dec, "decider-1", events.StreamState, events.EdgeStateSubject("edge-west"))
	for _, user := range []string{"decider-1", "dns-1", "prober-us-west-1", "edge-west"} {
		d.deniedPublish(d.as(user), user, events.StreamState, events.OverrideSubject("shop", "west", ""))
	}
	if _, err := events.Publish(context.Background(), dec.js, events.EndpointStateSubject("shop", "west", "w1"), mustEvent(t)); err != nil {
		t.Errorf("the decider cannot append an endpoint transition: %v", err)
	}
}

func TestDeploymentIdentitiesOnlyTheOperatorAndTheControllersAPIChangeTheConfiguration(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	for _, user := range []string{"decider-1", "dns-1", "prober-us-west-1", "edge-west"} {
		d.deniedPublish(d.as(user), user, events.StreamConfig, events.SubjectConfigDoc)
	}
	ctrl := d.as("controller-1")
	for _, subject := range []string{events.SubjectConfigDoc, events.OverrideSubject("shop", "west", "")} {
		if _, err := events.Publish(context.Background(), ctrl.js, subject, mustEvent(t)); err != nil {
			t.Errorf("the controller's API cannot publish on %s: %v", subject, err)
		}
	}
}

func TestDeploymentIdentitiesOnlyTheControllerPublishesRouteTables(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	for _, user := range []string{"decider-1", "dns-1", "prober-us-west-1", "edge-west", "edge-east"} {
		d.deniedPublish(d.as(user), user, events.StreamRoutes, events.AppRouteSubject("edge-west", "shop"))
	}
	if _, err := events.Publish(context.Background(), d.as("controller-1").js, events.AppRouteSubject("edge-west", "shop"), mustEvent(t)); err != nil {
		t.Errorf("the controller cannot publish a route table: %v", err)
	}
}

func TestDeploymentIdentitiesNoRoleReadsAnotherEdgesRoutesOrDeletesAConsumer(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	octx, ocancel := context.WithTimeout(context.Background(), time.Second)
	defer ocancel()
	if _, err := d.as("edge-west").js.CreateConsumer(octx, events.StreamRoutes, jetstream.ConsumerConfig{
		FilterSubject: events.EdgeRoutesSubjects("edge-east")}); err == nil {
		t.Error("edge-west created a consumer of edge-east's route table")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	op := d.as("operator")
	if _, err := op.js.CreateOrUpdateConsumer(ctx, events.StreamState, jetstream.ConsumerConfig{Durable: "audit"}); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"decider-1", "dns-1", "controller-1", "prober-us-west-1", "edge-west"} {
		c := d.as(user)
		dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := c.js.DeleteConsumer(dctx, events.StreamState, "audit")
		dcancel()
		if err == nil {
			t.Errorf("%s deleted the operator's consumer", user)
		}
		sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err = c.js.DeleteStream(sctx, events.StreamProbes)
		scancel()
		if err == nil {
			t.Errorf("%s deleted the PROBES stream", user)
		}
	}
	if _, err := op.js.Consumer(ctx, events.StreamState, "audit"); err != nil {
		t.Errorf("the operator's consumer is gone: %v", err)
	}
}

func TestDeploymentIdentitiesNoRoleCreatesAStreamEvenAMissingOneItNeedsNorChangesOne(t *testing.T) {
	d := startDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// On an empty cluster, before detour apply, no role creates a stream, not even one it needs:
	// the request's body, which permissions cannot see, would choose the stream's subjects,
	// sources and republishing.
	var ops []op
	for _, sc := range events.Streams(events.StreamOptions{}) {
		ops = append(ops, op{subject: "$JS.API.STREAM.CREATE." + sc.Name})
	}
	ops = append(ops, op{subject: "$JS.API.STREAM.CREATE." + events.StreamProbers})
	for _, user := range roleUsers {
		got := d.refused(d.as(user), ops)
		for _, o := range ops {
			if !got[o] {
				t.Errorf("%s is let %s while the stream is missing", user, o)
			}
		}
	}
	op := d.as("operator")
	if names := streamNames(ctx, op.js); len(names) > 0 {
		t.Fatalf("roles created streams %v", names)
	}
	// Nor after an operator deleted one: a prober that recreated PROBES republishing its results
	// into STATE would have STATE store them as an override.
	d.ensureStreams()
	if err := op.js.DeleteStream(ctx, events.StreamProbes); err != nil {
		t.Fatal(err)
	}
	const override = "detour.state.override.shop.primary._pool"
	prober := d.as("prober-us-west-1")
	result := events.ProbeSubject("us-west", "shop", "primary", "w1")
	forged := jetstream.StreamConfig{Name: events.StreamProbes, Subjects: []string{events.SubjectProbes}, Storage: jetstream.MemoryStorage,
		RePublish: &jetstream.RePublish{Source: result, Destination: override}}
	cctx, ccancel := context.WithTimeout(ctx, time.Second)
	_, err := prober.js.CreateStream(cctx, forged)
	ccancel()
	if err == nil {
		t.Errorf("prober-us-west-1 recreated PROBES republishing to %s", override)
	}
	// Acknowledged once PROBES stores it, and so republishes it, were it recreated.
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	_, err = prober.js.Publish(pctx, result, mustEvent(t).Encode())
	pcancel()
	st, err2 := op.js.Stream(ctx, events.StreamState)
	if err2 != nil {
		t.Fatal(err2)
	}
	inState := func() bool { _, err := st.GetLastMsgForSubject(ctx, override); return err == nil }
	if err == nil {
		t.Errorf("prober-us-west-1's result was stored with PROBES deleted")
		// The republished copy reaches STATE a moment after PROBES stores it.
		eventstest.Eventually(t, 2*time.Second, inState, "the result stored in PROBES is not republished to STATE")
	}
	if inState() {
		t.Errorf("STATE stored a prober's result as an override on %s", override)
	}
	var seen []string
	eventstest.Eventually(t, 2*time.Second, func() bool {
		seen = prober.errors()
		return slices.ContainsFunc(seen, func(v string) bool {
			return strings.Contains(v, "Permissions Violation for Publish to \"$JS.API.STREAM.CREATE."+events.StreamProbes+"\"")
		})
	}, "no permissions violation for the prober's creation of PROBES (errors %q)", &seen)
	if _, err := op.js.Stream(ctx, events.StreamProbes); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("PROBES is back, made by a role (err %v)", err)
	}
	// Nor does any role change a stream the operator made.
	d.ensureStreams()
	pst, err := op.js.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := pst.CachedInfo().Config
	cfg.MaxAge = time.Second
	for _, user := range []string{"edge-west", "decider-1", "prober-us-west-1"} {
		uctx, ucancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := d.as(user).js.UpdateStream(uctx, cfg)
		ucancel()
		if err == nil {
			t.Errorf("%s changed the PROBES stream", user)
		}
	}
	if info, err := pst.Info(ctx); err != nil || info.Config.MaxAge == time.Second {
		t.Errorf("PROBES max age is %v (err %v): a role changed it", info.Config.MaxAge, err)
	}
}

// streamNames lists the streams JetStream holds.
func streamNames(ctx context.Context, js jetstream.JetStream) []string {
	var names []string
	l := js.StreamNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	return names
}

// roleUsers are the NATS users of the roles' processes (the operator's, which may do anything,
// aside): one per process, two processes of most roles.
var roleUsers = []string{"prober-us-west-1", "prober-us-west-2", "prober-us-east-1", "decider-1", "decider-2",
	"dns-1", "dns-2", "controller-1", "edge-west", "edge-east"}

// roleOf is the `detour` role that runs as user.
func roleOf(user string) string {
	role, _, _ := strings.Cut(user, "-")
	return role
}

// usersWith returns the role users named prefix or prefix-…: usersWith("decider") is every
// decider's, usersWith("prober-us-west") every us-west prober's.
func usersWith(prefixes ...string) []string {
	var out []string
	for _, u := range roleUsers {
		for _, p := range prefixes {
			if u == p || strings.HasPrefix(u, p+"-") {
				out = append(out, u)
			}
		}
	}
	return out
}

// ownConsumer is a consumer a user reads a stream through (events.ConsumerName), with the
// filter subject it creates it with.
type ownConsumer struct{ stream, name, filter string }

// consumersOf lists the consumers each role's process reads through: the role's own reading of
// a stream by the user's name, its configuration watch, the controller's API and alerts.
func consumersOf(user string) []ownConsumer {
	own := []ownConsumer{{events.StreamConfig, events.ConsumerName(user, "config"), events.SubjectConfigDoc}}
	switch roleOf(user) {
	case "prober":
		region := strings.TrimPrefix(user[:strings.LastIndex(user, "-")], "prober-")
		own = append(own, ownConsumer{events.StreamProbers, user, "$KV." + events.BucketProbers + "." + region + ".*"})
	case "decider":
		own = append(own, ownConsumer{events.StreamState, user, events.SubjectState},
			ownConsumer{events.StreamProbes, user, events.EndpointProbeSubjects}, ownConsumer{events.StreamDrills, user, events.SubjectDrills})
	case "dns":
		own = append(own, ownConsumer{events.StreamState, user, events.SubjectState})
	case "controller":
		own = append(own, ownConsumer{events.StreamConfig, events.ConsumerName(user, "api"), events.SubjectConfigDoc},
			ownConsumer{events.StreamState, user, events.SubjectState},
			ownConsumer{events.StreamState, events.ConsumerName(user, "api"), events.SubjectState},
			ownConsumer{events.StreamState, events.ConsumerName(user, "alerts"), events.SubjectState},
			ownConsumer{events.StreamDrills, user, events.SubjectDrills},
			ownConsumer{events.StreamDrills, events.ConsumerName(user, "api"), events.SubjectDrills},
			ownConsumer{events.StreamDrills, events.ConsumerName(user, "alerts"), events.SubjectDrills},
			ownConsumer{events.StreamAlerts, events.ConsumerName(user, "alerts"), events.SubjectAlerts})
	case "edge":
		own = append(own, ownConsumer{events.StreamRoutes, user, events.EdgeRoutesSubjects(user)})
	}
	return own
}

// op is one thing a user may try: publish on a subject, or subscribe to one.
type op struct {
	sub     bool
	subject string
}

func (o op) String() string {
	if o.sub {
		return "subscribe " + o.subject
	}
	return "publish " + o.subject
}

// sentinels numbers the sentinel publishes of refused.
var sentinels atomic.Int64

// refused tries each op as c (an empty publish, as `nats pub` would send) and returns those the
// server refused. A refused publish or subscription is reported asynchronously: a refused
// sentinel publish sent after the others tells when every refusal has come in.
func (d *deployment) refused(c *client, ops []op) map[op]bool {
	d.t.Helper()
	sentinel := fmt.Sprintf("detour.sentinel.%d", sentinels.Add(1))
	var subs []*nats.Subscription
	for _, o := range ops {
		if o.sub {
			s, err := c.nc.SubscribeSync(o.subject)
			if err != nil {
				d.t.Fatal(err)
			}
			subs = append(subs, s)
		} else if err := c.nc.Publish(o.subject, nil); err != nil {
			d.t.Fatal(err)
		}
	}
	if err := c.nc.Publish(sentinel, nil); err != nil {
		d.t.Fatal(err)
	}
	match := func(v string, o op) bool {
		kind := "Publish"
		if o.sub {
			kind = "Subscription"
		}
		return strings.Contains(v, "Permissions Violation for "+kind+" to \""+o.subject+"\"")
	}
	var seen []string
	eventstest.Eventually(d.t, 5*time.Second, func() bool {
		seen = c.errors()
		return slices.ContainsFunc(seen, func(v string) bool { return match(v, op{subject: sentinel}) })
	}, "no refusal of the sentinel (errors %q)", &seen)
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	out := map[op]bool{}
	for _, o := range ops {
		if slices.ContainsFunc(seen, func(v string) bool { return match(v, o) }) {
			out[o] = true
		}
	}
	return out
}

// permissionRow is what one user may do, by the identity it runs as.
type permissionRow struct {
	name string
	op   op
	// allowed are the users the server lets do it; every other role user is refused.
	allowed []string
}

// checkRows tries every row as every role user and reports each answer the server gives that
// differs from the row's.
func checkRows(t *testing.T, d *deployment, rows []permissionRow) {
	t.Helper()
	for _, user := range roleUsers {
		ops := make([]op, len(rows))
		for i, r := range rows {
			ops[i] = r.op
		}
		got := d.refused(d.as(user), ops)
		for _, r := range rows {
			if want := !slices.Contains(r.allowed, user); got[r.op] != want {
				verb := map[bool]string{true: "is refused", false: "is let"}[got[r.op]]
				t.Errorf("%s: %s %s %s (allowed: %v)", r.name, user, verb, r.op, r.allowed)
			}
		}
	}
}

func TestDeploymentIdentitiesEachUserReceivesRepliesOnlyUnderItsOwnInbox(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	var rows []permissionRow
	rows = append(rows, permissionRow{"nobody reads the shared inbox", op{sub: true, subject: "_INBOX.>"}, nil})
	for _, user := range roleUsers {
		rows = append(rows, permissionRow{"only " + user + " reads its replies",
			op{sub: true, subject: events.InboxPrefix(user) + ".>"}, []string{user}})
	}
	checkRows(t, d, rows)
	// And the JetStream API answers each of them there.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, user := range roleUsers {
		if _, err := d.as(user).js.Stream(ctx, events.StreamConfig); err != nil {
			t.Errorf("%s gets no JetStream answer under %s: %v", user, events.InboxPrefix(user), err)
		}
	}
}

func TestDeploymentIdentitiesWhoMayPublishEachFact(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	rows := []permissionRow{
		{"a region's probe results", op{subject: events.ProbeSubject("us-west", "shop", "west", "w1")}, usersWith("prober-us-west")},
		{"a region's probe results", op{subject: events.ProbeBatchSubject("us-east", "p1")}, usersWith("prober-us-east")},
		{"a region's membership", op{subject: "$KV." + events.BucketProbers + ".us-west.p1"}, usersWith("prober-us-west")},
		{"a region's membership", op{subject: "$KV." + events.BucketProbers + ".us-east.p1"}, usersWith("prober-us-east")},
		{"an edge's heartbeat", op{subject: events.HeartbeatSubject("edge-west")}, []string{"edge-west"}},
		{"an edge's heartbeat", op{subject: events.HeartbeatSubject("edge-east")}, []string{"edge-east"}},
		{"an endpoint transition", op{subject: events.EndpointStateSubject("shop", "west", "w1")}, usersWith("decider")},
		{"a pool transition", op{subject: events.PoolStateSubject("shop", "west")}, usersWith("decider")},
		{"an edge transition", op{subject: events.EdgeStateSubject("edge-west")}, usersWith("controller")},
		{"an override", op{subject: events.OverrideSubject("shop", "west", "w1")}, usersWith("controller")},
		{"a route", op{subject: events.AppRouteSubject("edge-west", "shop")}, usersWith("controller")},
		{"a route", op{subject: events.AppRouteSubject("edge-east", "shop")}, usersWith("controller")},
		{"the configuration", op{subject: events.SubjectConfigDoc}, usersWith("controller")},
		{"a DNS server's zone change", op{subject: events.ZoneSubject("demo.test.", "dns-1")}, []string{"dns-1"}},
		{"a DNS server's zone change", op{subject: events.ZoneSubject("demo.test.", "dns-2")}, []string{"dns-2"}},
		{"a drill", op{subject: events.DrillSubject("d1")}, usersWith("controller")},
		{"an alert delivery", op{subject: events.AlertSubject("oncall")}, usersWith("controller")},
		{"an alert attempt's claim", op{subject: events.AlertClaimSubject("oncall", "0a1b2c3d-0000-5000-8000-000000000000", 1)}, usersWith("controller")},
		{"an edge's rejection", op{subject: config.RejectedSubject("edge", "edge-west")}, []string{"edge-west"}},
		{"a decider's rejection", op{subject: config.RejectedSubject("decider", "decider-1")}, []string{"decider-1"}},
		{"a decider's rejection", op{subject: config.RejectedSubject("decider", "decider-2")}, []string{"decider-2"}},
		{"a decider's rejection", op{subject: config.RejectedSubject("decider", "d9")}, nil},
		{"a prober's rejection", op{subject: config.RejectedSubject("prober", "us-west", "prober-us-west-1")}, []string{"prober-us-west-1"}},
		{"a prober's rejection", op{subject: config.RejectedSubject("prober", "us-west", "prober-us-west-2")}, []string{"prober-us-west-2"}},
		{"a prober's rejection", op{subject: config.RejectedSubject("prober", "us-west", "p1")}, nil},
		{"a prober's rejection", op{subject: config.RejectedSubject("prober", "us-east", "prober-us-east-1")}, []string{"prober-us-east-1"}},
		{"the controller's rejection", op{subject: config.RejectedSubject("controller", "controller-1")}, []string{"controller-1"}},
		{"the controller's rejection", op{subject: config.RejectedSubject("controller", "c9")}, nil},
		{"a DNS server's rejection", op{subject: config.RejectedSubject("dns", "dns-1")}, []string{"dns-1"}},
		{"a DNS server's rejection", op{subject: config.RejectedSubject("dns", "dns-2")}, []string{"dns-2"}},
	}
	checkRows(t, d, rows)
}

func TestDeploymentIdentitiesNoRoleChangesPurgesOrDeletesAStreamNorListsOrDeletesAnothersConsumers(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	streams := []string{events.StreamProbers}
	for _, sc := range events.Streams(events.StreamOptions{}) {
		streams = append(streams, sc.Name)
	}
	var rows []permissionRow
	for _, s := range streams {
		rows = append(rows,
			permissionRow{"create " + s, op{subject: "$JS.API.STREAM.CREATE." + s}, nil},
			permissionRow{"change " + s, op{subject: "$JS.API.STREAM.UPDATE." + s}, nil},
			permissionRow{"purge " + s, op{subject: "$JS.API.STREAM.PURGE." + s}, nil},
			permissionRow{"delete " + s, op{subject: "$JS.API.STREAM.DELETE." + s}, nil},
			permissionRow{"delete a message of " + s, op{subject: "$JS.API.STREAM.MSG.DELETE." + s}, nil},
			permissionRow{"list the consumers of " + s, op{subject: "$JS.API.CONSUMER.LIST." + s}, nil},
			permissionRow{"list the consumer names of " + s, op{subject: "$JS.API.CONSUMER.NAMES." + s}, nil},
			permissionRow{"delete a consumer of " + s, op{subject: "$JS.API.CONSUMER.DELETE." + s + ".audit"}, nil},
			permissionRow{"create a durable consumer of " + s, op{subject: "$JS.API.CONSUMER.DURABLE.CREATE." + s + ".audit"}, nil},
			permissionRow{"create an unfiltered consumer of " + s, op{subject: "$JS.API.CONSUMER.CREATE." + s + ".audit"}, nil},
		)
	}
	// Each process may create (with its own filter), read, pull from and delete exactly the
	// consumers named for it: no other process, not even one of its own role, can take one
	// over, drain it or delete it.
	for _, user := range roleUsers {
		for _, c := range consumersOf(user) {
			what := user + "'s consumer " + c.name + " of " + c.stream
			rows = append(rows,
				permissionRow{"create " + what, op{subject: "$JS.API.CONSUMER.CREATE." + c.stream + "." + c.name + "." + c.filter}, []string{user}},
				permissionRow{"pull from " + what, op{subject: "$JS.API.CONSUMER.MSG.NEXT." + c.stream + "." + c.name}, []string{user}},
				permissionRow{"read " + what, op{subject: "$JS.API.CONSUMER.INFO." + c.stream + "." + c.name}, []string{user}},
				permissionRow{"delete " + what, op{subject: "$JS.API.CONSUMER.DELETE." + c.stream + "." + c.name}, []string{user}},
				permissionRow{"create " + what + " without a filter", op{subject: "$JS.API.CONSUMER.CREATE." + c.stream + "." + c.name}, nil},
			)
		}
	}
	for _, e := range []string{"edge-west", "edge-east"} {
		rows = append(rows,
			permissionRow{"read " + e + "'s route table by a consumer of another name", op{subject: "$JS.API.CONSUMER.CREATE.ROUTES.x." + events.EdgeRoutesSubjects(e)}, nil},
			// While its consumer cannot be replaced (see events.BridgeLast).
			permissionRow{"read " + e + "'s route table directly", op{subject: "$JS.API.DIRECT.GET.ROUTES." + events.AppRouteSubject(e, "shop")}, append(usersWith("controller"), e)},
		)
	}
	rows = append(rows, permissionRow{"read edge-east's route table through edge-west's consumer",
		op{subject: "$JS.API.CONSUMER.CREATE.ROUTES.edge-west." + events.EdgeRoutesSubjects("edge-east")}, nil})
	rows = append(rows,
		// A direct get by sequence names its subject in the request: only for readers of all of
		// the stream (see events.BridgeNext).
		permissionRow{"read any message of STATE directly", op{subject: "$JS.API.DIRECT.GET.STATE"}, usersWith("decider", "dns", "controller")},
		permissionRow{"read any message of ROUTES directly", op{subject: "$JS.API.DIRECT.GET.ROUTES"}, nil},
		// Every role's configuration watch reads CONFIG so while its consumer's creation goes
		// unanswered; the controller's API reads the configuration history in batches of versions.
		permissionRow{"read any message of CONFIG directly", op{subject: "$JS.API.DIRECT.GET.CONFIG"}, roleUsers},
		// A DNS server reads back, at start, the IXFR history its zone versions left in DNS.
		permissionRow{"read any message of DNS directly", op{subject: "$JS.API.DIRECT.GET.DNS"}, usersWith("dns")},
		// A decider, the controller and its alerts read DRILLS so while their consumer's creation
		// goes unanswered, and the alerts ALERTS too.
		permissionRow{"read any message of DRILLS directly", op{subject: "$JS.API.DIRECT.GET.DRILLS"}, usersWith("decider", "controller")},
		permissionRow{"read any message of ALERTS directly", op{subject: "$JS.API.DIRECT.GET.ALERTS"}, usersWith("controller")},
		// The alerts read an attempt's record as ALERTS' leader holds it before taking it over.
		permissionRow{"read a message of ALERTS from its leader", op{subject: "$JS.API.STREAM.MSG.GET.ALERTS"}, usersWith("controller")},
		// A decider reads PROBES so while its consumer's creation goes unanswered.
		permissionRow{"read any message of PROBES directly", op{subject: "$JS.API.DIRECT.GET.PROBES"}, usersWith("decider")},
		// The decider hears results as published, to decide while PROBES elects a leader: those
		// it folds, not the edge listeners' batches.
		permissionRow{"hear the results published alone and the endpoints' batches", op{sub: true, subject: events.EndpointProbeSubjects}, usersWith("decider")},
		permissionRow{"hear every probe result as published", op{sub: true, subject: events.SubjectProbes}, nil},
		permissionRow{"hear one region's probe results as published", op{sub: true, subject: "detour.probe.us-west.>"}, nil},
		// The controller hears the checks of edge listeners, alone and batched, and nothing else.
		permissionRow{"hear the lone results of edge listeners", op{sub: true, subject: events.EdgeProbeSubjects}, usersWith("decider", "controller")},
		permissionRow{"hear the batches of edge-listener results", op{sub: true, subject: events.EdgeProbeBatchSubjects}, usersWith("controller")},
		permissionRow{"hear the batches of endpoint results", op{sub: true, subject: events.ProbeBatchSubjects}, usersWith("decider")},
	)
	// A decider reads PROBES through its one consumer with its one filter, and none that takes
	// the edge listeners' batches. (A permission's * also matches a literal >, so it may end its
	// filter in > at the fourth token: that takes no three-token subject either.)
	for _, user := range usersWith("decider") {
		for _, filter := range []string{events.SubjectProbes, "detour.probe.us-west.>", events.EdgeProbeBatchSubjects, "detour.probe.*.*.>"} {
			rows = append(rows, permissionRow{"create " + user + "'s consumer of PROBES with filter " + filter,
				op{subject: "$JS.API.CONSUMER.CREATE." + events.StreamProbes + "." + user + "." + filter}, nil})
		}
	}
	rows = append(rows,
		permissionRow{"read another region's membership", op{subject: "$JS.API.DIRECT.GET.KV_detour_probers.$KV.detour_probers.us-east.p1"}, usersWith("prober-us-east")},
		permissionRow{"take a consumer's deliveries as another user", op{subject: "$JS.API.CONSUMER.MSG.NEXT.ROUTES.audit"}, nil},
	)
	checkRows(t, d, rows)
	// STATE itself refuses a purge, even the operator's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := d.as("operator").js.Stream(ctx, events.StreamState)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("the operator purged STATE")
	}
}

func TestDeploymentIdentitiesNoProcessTakesOverDrainsOrDeletesAnothersConsumerEvenOfItsOwnRole(t *testing.T) {
	for _, tc := range []struct {
		name, victim, thief, stream, filter, reader string
		// publisher stores a message on subject, which the victim's follower reads.
		publisher, subject string
	}{
		{name: "an edge's route table", victim: "edge-west", thief: "edge-east", stream: events.StreamRoutes,
			filter: events.EdgeRoutesSubjects("edge-west"), publisher: "controller-1", subject: events.AppRouteSubject("edge-west", "shop")},
		{name: "a DNS server's STATE", victim: "dns-1", thief: "dns-2", stream: events.StreamState,
			filter: events.SubjectState, publisher: "decider-1", subject: events.EndpointStateSubject("shop", "west", "w1")},
		{name: "a decider's PROBES", victim: "decider-1", thief: "decider-2", stream: events.StreamProbes,
			filter: events.EndpointProbeSubjects, publisher: "prober-us-west-1", subject: events.ProbeSubject("us-west", "shop", "west", "w1")},
		{name: "a DNS server's reading of the others' zone versions", victim: "dns-1", thief: "dns-2", stream: events.StreamDNS,
			filter: events.SubjectDNS, reader: "peers", publisher: "dns-2", subject: events.ZoneSubject("demo.test.", "dns-2")},
		{name: "a prober's configuration watch", victim: "prober-us-west-1", thief: "prober-us-west-2", stream: events.StreamConfig,
			filter: events.SubjectConfigDoc, reader: "config", publisher: "controller-1", subject: events.SubjectConfigDoc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDeployment(t)
			d.ensureStreams()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pub := d.as(tc.publisher)
			publish := func(n int) {
				t.Helper()
				e, err := events.New(events.TypeProbeCompleted, tc.publisher, time.Now(), map[string]int{"n": n})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := events.Publish(ctx, pub.js, tc.subject, e); err != nil {
					t.Fatal(err)
				}
			}
			publish(1)
			victim := d.as(tc.victim)
			got := make(chan []byte, 16)
			f := events.Follower{JS: victim.js, Stream: tc.stream, Reader: tc.reader, Log: zerolog.New(zerolog.NewTestWriter(t)),
				Start: jetstream.OrderedConsumerConfig{FilterSubjects: []string{tc.filter}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy}}
			done := make(chan struct{})
			go func() {
				defer close(done)
				f.Run(ctx, func(d events.Delivery) {
					if d.Msg != nil {
						got <- d.Data
					}
				})
			}()
			defer func() { cancel(); <-done }()
			select {
			case <-got:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s's follower got nothing", tc.victim)
			}
			name := events.ConsumerName(tc.victim, tc.reader)
			if _, err := d.as("operator").js.Consumer(ctx, tc.stream, name); err != nil {
				t.Fatalf("%s's consumer is not named %s: %v", tc.victim, name, err)
			}
			// The thief, whose user is of the same role, knows the name and tries everything.
			thief := d.as(tc.thief)
			try := func(what string, do func(context.Context) error) {
				t.Helper()
				tctx, tcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer tcancel()
				if err := do(tctx); err == nil {
					t.Errorf("%s %s", tc.thief, what)
				}
			}
			try("replaced "+name, func(ctx context.Context) error {
				_, err := thief.js.CreateOrUpdateConsumer(ctx, tc.stream, jetstream.ConsumerConfig{Name: name,
					FilterSubject: tc.filter, DeliverPolicy: jetstream.DeliverAllPolicy})
				return err
			})
			try("read "+name, func(ctx context.Context) error {
				_, err := thief.js.Consumer(ctx, tc.stream, name)
				return err
			})
			try("deleted "+name, func(ctx context.Context) error { return thief.js.DeleteConsumer(ctx, tc.stream, name) })
			if _, err := thief.nc.Request("$JS.API.CONSUMER.MSG.NEXT."+tc.stream+"."+name, []byte(`{"batch":1,"no_wait":true}`), 300*time.Millisecond); err == nil {
				t.Errorf("%s pulled from %s", tc.thief, name)
			}
			// The victim still gets every new message, and ran into nothing.
			publish(2)
			select {
			case b := <-got:
				if !strings.Contains(string(b), `"n":2`) {
					t.Errorf("%s got %s, want the second message", tc.victim, b)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s's follower got no second message", tc.victim)
			}
			if v := victim.errors(); len(v) > 0 {
				t.Errorf("%s ran into the server's permissions: %q", tc.victim, v)
			}
			if v := thief.errors(); len(v) == 0 {
				t.Errorf("no permissions violation reported to %s", tc.thief)
			}
		})
	}
}

func TestDeploymentIdentitiesATSIGSecretFromAFileNeverReachesConfig(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	const secret = "c2VjcmV0LWtleS1ub2JvZHktYnV0LWRucy1zZWVz"
	file := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`
zones:
  - name: demo.test
    push: {server: "127.0.0.1:53", tsig: {name: detour., secret_file: %q}}
apps: []
`, file)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := config.Publish(ctx, d.as("operator").js, "test.yaml", []byte(doc), "test"); err != nil {
		t.Fatal(err)
	}
	// Every role reads CONFIG; what edge-west reads there names the file, not the key.
	v, err := config.Active(ctx, d.as("edge-west").js)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v.Document, secret) || !strings.Contains(v.Document, file) {
		t.Errorf("CONFIG as edge-west reads it: %s", v.Document)
	}
}

func mustEvent(t *testing.T) events.Envelope {
	t.Helper()
	e, err := events.New(events.TypeEndpointUp, t.Name(), time.Now(), map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// listen accepts and closes connections on a port of ip until the test ends or ln is closed: a
// healthy TCP endpoint.
func listen(t *testing.T, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return ln
}

func TestDeploymentIdentitiesEveryRoleRunsWithOnlyItsOwnPermissions(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	west, east := listen(t, "127.0.0.1").Addr().String(), listen(t, "127.0.0.1").Addr().String()
	shopWest, shopEast := listen(t, "127.0.0.31"), listen(t, "127.0.0.32")
	var alerted atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { alerted.Add(1) }))
	defer hook.Close()
	doc := pipelineDoc(t, shopWest, shopEast, west, east) + fmt.Sprintf(`alerts:
  - {name: oncall, on: [pool_down], apps: [shop], webhooks: [{url: %q}]}
`, hook.URL)
	op := d.as("operator")
	ctx := context.Background()
	cfg, v1, err := config.Apply(ctx, op.js, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &logs)).Level(zerolog.WarnLevel)
	roles := map[string]*client{}
	for _, user := range roleUsers {
		roles[user] = d.as(user)
	}
	// Every process follows CONFIG for new versions; the controller also serves the API and sends
	// alerts, each following STATE (and CONFIG) on the controller's connection.
	watches := map[string]<-chan *config.Config{}
	for _, user := range roleUsers {
		watches[user] = config.Watch(t.Context(), roles[user].js, v1.Number, log, rejectingAs(user)...)
	}
	secret, line, err := api.NewToken("ci", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := api.ParseTokens([]byte(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctrl := roles["controller-1"]
	srv, err := api.Listen(api.Options{JS: ctrl.js, Config: cfg, Addr: "127.0.0.1:0", Tokens: tokens, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api", srv.Run)
	eventstest.Run(t, "alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: ctrl.js, Config: cfg, Name: "controller-1", Log: log})
	})
	for _, user := range usersWith("prober") {
		if _, err := config.Latest(ctx, roles[user].js); err != nil {
			t.Fatalf("%s reads the configuration: %v", user, err)
		}
	}
	servers := runPipeline(t, roles, cfg, log)
	dns := servers[0]

	has := func(stream, subject string) bool {
		st, err := op.js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		_, err = st.GetLastMsgForSubject(ctx, subject)
		return err == nil
	}
	want := [][2]string{
		{events.StreamState, events.EndpointStateSubject("www", "us-west", "w1")},
		{events.StreamState, events.EndpointStateSubject("www", "us-east", "e1")},
		{events.StreamState, events.PoolStateSubject("www", "us-east")},
		{events.StreamState, events.EndpointStateSubject("shop", "us-west", "w1")},
		{events.StreamState, events.EdgeStateSubject("edge-west")},
		{events.StreamState, events.EdgeStateSubject("edge-east")},
		{events.StreamRoutes, events.AppRouteSubject("edge-west", "www")},
		{events.StreamRoutes, events.AppRouteSubject("edge-east", "www")},
		{events.StreamProbers, "$KV." + events.BucketProbers + ".us-west.p1"},
		{events.StreamProbers, "$KV." + events.BucketProbers + ".us-east.p1"},
	}
	var missing []string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		missing = missing[:0]
		for _, w := range want {
			if !has(w[0], w[1]) {
				missing = append(missing, w[1])
			}
		}
		return len(missing) == 0
	}, "nothing stored on %q", &missing)
	// The DNS server records a zone change when shop's answer fails over.
	eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(lookup(t, dns.Addr(), "shop.demo.test."), []string{"127.0.0.31"}) },
		"shop.demo.test does not answer 127.0.0.31")
	// Lose every consumer, as when the node hosting them dies: each follower makes another with
	// its own permissions only.
	consumers := func(stream string) []string {
		st, err := op.js.Stream(ctx, stream)
		if err != nil {
			return nil
		}
		var names []string
		l := st.ConsumerNames(ctx)
		for n := range l.Name() {
			names = append(names, n)
		}
		return names
	}
	// Every consumer is named for the process that reads through it.
	named := map[string]string{}
	for _, user := range roleUsers {
		for _, c := range consumersOf(user) {
			named[c.stream+" "+c.name] = user
		}
	}
	streams := []string{events.StreamConfig, events.StreamState, events.StreamProbes, events.StreamDrills, events.StreamRoutes, events.StreamProbers}
	var absent []string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		absent = absent[:0]
		for key := range named {
			stream, name, _ := strings.Cut(key, " ")
			if key == events.StreamDrills+" "+events.ConsumerName("controller-1", "alerts") {
				continue // the alerts follow DRILLS only for groups that alert on drills
			}
			if !slices.Contains(consumers(stream), name) {
				absent = append(absent, key)
			}
		}
		return len(absent) == 0
	}, "consumers not there: %q", &absent)
	for _, stream := range streams {
		for _, n := range consumers(stream) {
			if named[stream+" "+n] == "" {
				t.Errorf("consumer %s of %s is named for no process", n, stream)
			}
		}
	}
	// Lose every consumer, as when the node hosting them dies: each follower makes another with
	// its own permissions only, and says so once.
	lostBefore, lost := logs.Count("stream unreachable; retrying"), 0
	for _, stream := range streams {
		for _, n := range consumers(stream) {
			if err := op.js.DeleteConsumer(ctx, stream, n); err != nil {
				t.Fatal(err)
			}
			lost++
		}
	}
	_ = shopWest.Close()
	eventstest.Eventually(t, 5*time.Second, func() bool { return has(events.StreamDNS, events.ZoneSubject("demo.test.", "dns-1")) },
		"no zone change stored after shop's us-west endpoint died")
	eventstest.Eventually(t, 5*time.Second, func() bool { return alerted.Load() > 0 }, "no alert sent for shop's us-west pool")
	eventstest.Eventually(t, 5*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Addr()+"/v1/transitions?app=shop&endpoint=w1&to=down", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer func() { _ = resp.Body.Close() }()
		var page struct{ Transitions []json.RawMessage }
		return json.NewDecoder(resp.Body).Decode(&page) == nil && len(page.Transitions) > 0
	}, "the api does not show shop's us-west endpoint down")
	// The API's other reads run on the controller's connection too.
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/config/history", ""},
		{http.MethodGet, "/v1/config", ""},
		{http.MethodGet, "/v1/overrides", ""},
		{http.MethodGet, "/v1/drills", ""},
		{http.MethodPost, "/v1/config/plan", doc},
	} {
		if code, b := apiRequest(t, srv.Addr(), secret, c.method, c.path, c.body); code != http.StatusOK {
			t.Errorf("%s %s as the controller: %d %s", c.method, c.path, code, b)
		}
	}
	_, v2, err := config.Apply(ctx, op.js, "test.yaml", []byte(doc+"# v2\n"), config.ApplyOptions{By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range roleUsers {
		select {
		case c := <-watches[user]:
			if c.Version != v2.Number {
				t.Errorf("%s's configuration watch delivered version %d, want %d", user, c.Version, v2.Number)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s's configuration watch did not deliver version %d", user, v2.Number)
		}
	}
	if n := logs.Count("stream unreachable; retrying") - lostBefore; n > lost {
		t.Errorf("%d consumers lost, %d lines logged about it: want one per loss, not per attempt", lost, n)
	}
	for _, s := range servers {
		eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(lookup(t, s.Addr(), "shop.demo.test."), []string{"127.0.0.32"}) },
			"DNS server %s does not answer shop.demo.test with the us-east endpoint", s.Addr())
	}
	for user, c := range roles {
		if v := c.errors(); len(v) > 0 {
			t.Errorf("%s ran into the server's permissions: %q\n(a role that now needs another subject, stream or consumer: allow exactly that in deployments/nats/accounts.conf)", user, v)
		}
	}
}

// count returns how many lines so far hold msg.
// lookup asks the DNS server at addr for name's A records.
func lookup(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	r, err := mdns.Exchange(m, addr)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// apiRequest sends method path with body to the API at addr with the bearer token secret, and
// returns the answer's status and body.
func apiRequest(t *testing.T, addr, secret, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestDeploymentIdentitiesRolesStartedBeforeTheOperatorMakesTheStreamsWaitForThemAndThenWork(t *testing.T) {
	d := startDeployment(t)
	west, east := listen(t, "127.0.0.1").Addr().String(), listen(t, "127.0.0.1").Addr().String()
	shopWest, shopEast := listen(t, "127.0.0.31"), listen(t, "127.0.0.32")
	doc := pipelineDoc(t, shopWest, shopEast, west, east)
	// Every role starts from its --config file on a cluster that has no stream yet, as when the
	// roles of the compose file start beside its apply service, or before an operator runs
	// detour apply.
	cfg, err := config.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var logs eventstest.Logs
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), &logs))
	roles := map[string]*client{}
	for _, user := range roleUsers {
		roles[user] = d.as(user)
	}
	servers := runPipeline(t, roles, cfg, log)
	eventstest.Eventually(t, 5*time.Second, func() bool { return logs.Count("waiting for the membership bucket") == 3 },
		"the probers do not wait for their bucket")
	// The operator runs detour apply: it creates every stream and the probers' bucket, and makes
	// the configuration active.
	d.ensureStreams()
	op := d.as("operator")
	ctx := context.Background()
	if _, _, err := config.Apply(ctx, op.js, "test.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	has := func(stream, subject string) bool {
		st, err := op.js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		_, err = st.GetLastMsgForSubject(ctx, subject)
		return err == nil
	}
	want := [][2]string{
		{events.StreamProbers, "$KV." + events.BucketProbers + ".us-west.p1"},
		{events.StreamProbers, "$KV." + events.BucketProbers + ".us-east.p1"},
		{events.StreamState, events.EndpointStateSubject("shop", "us-west", "w1")},
		{events.StreamState, events.EndpointStateSubject("www", "us-east", "e1")},
		{events.StreamState, events.EdgeStateSubject("edge-west")},
		{events.StreamState, events.EdgeStateSubject("edge-east")},
		{events.StreamRoutes, events.AppRouteSubject("edge-west", "www")},
		{events.StreamRoutes, events.AppRouteSubject("edge-east", "www")},
	}
	var missing []string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		missing = missing[:0]
		for _, w := range want {
			if !has(w[0], w[1]) {
				missing = append(missing, w[1])
			}
		}
		return len(missing) == 0
	}, "nothing stored on %q", &missing)
	// Each edge follows its route table through its own consumer.
	for _, e := range []string{"edge-west", "edge-east"} {
		eventstest.Eventually(t, 5*time.Second, func() bool {
			_, err := op.js.Consumer(ctx, events.StreamRoutes, e)
			return err == nil
		}, "%s does not follow ROUTES", e)
	}
	// A probe result takes shop's us-west endpoint down: STATE records it and both DNS servers
	// answer with the us-east one.
	for _, s := range servers {
		eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(lookup(t, s.Addr(), "shop.demo.test."), []string{"127.0.0.31"}) },
			"DNS server %s does not answer shop.demo.test with the us-west endpoint", s.Addr())
	}
	_ = shopWest.Close()
	eventstest.Eventually(t, 5*time.Second, func() bool {
		st, err := op.js.Stream(ctx, events.StreamState)
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(ctx, events.EndpointStateSubject("shop", "us-west", "w1"))
		if err != nil {
			return false
		}
		e, err := events.Decode(m.Data)
		return err == nil && e.Type == events.TypeEndpointDown
	}, "no transition of shop's us-west endpoint to down in STATE")
	for _, s := range servers {
		eventstest.Eventually(t, 5*time.Second, func() bool { return slices.Equal(lookup(t, s.Addr(), "shop.demo.test."), []string{"127.0.0.32"}) },
			"DNS server %s does not answer shop.demo.test with the us-east endpoint", s.Addr())
	}
	for user, c := range roles {
		if v := c.errors(); len(v) > 0 {
			t.Errorf("%s ran into the server's permissions: %q", user, v)
		}
	}
}

// pipelineDoc is the configuration of the pipeline tests: shop with an endpoint in each region on
// shopWest and shopEast, and www behind edge-west and edge-east, whose endpoints are west and
// east.
func pipelineDoc(t *testing.T, shopWest, shopEast net.Listener, west, east string) string {
	return fmt.Sprintf(`
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 100ms, timeout: 90ms, fall: 3, rise: 2}
    pools:
      - {name: us-west, region: us-west, endpoints: [{name: w1, address: %q}]}
      - {name: us-east, region: us-east, endpoints: [{name: e1, address: %q}]}
  - name: www
    fqdn: www.demo.test
    check: {type: tcp, interval: 100ms, timeout: 90ms, fall: 3, rise: 2}
    ingress: [edge-west, edge-east]
    primary_edge: edge-west
    pools:
      - {name: us-west, region: us-west, endpoints: [{name: w1, address: %q}]}
      - {name: us-east, region: us-east, endpoints: [{name: e1, address: %q}]}
edges:
  - {name: edge-west, region: us-west, hostname: edge-west.demo.test, address: 127.0.0.1,
     heartbeat: {interval: 100ms}, apps: [{app: www, listen: %q, secondary: edge-east}]}
  - {name: edge-east, region: us-east, hostname: edge-east.demo.test, address: 127.0.0.1,
     heartbeat: {interval: 100ms}, apps: [{app: www, listen: %q, secondary: edge-west}]}
`, shopWest.Addr(), shopEast.Addr(), west, east, freeAddr(t), freeAddr(t))
}

// runPipeline runs every role of the deployment but the controller's API and alerts, each as its
// own user from roles, with cfg: two probers in us-west and one in us-east, two deciders, two
// DNS servers (returned), the controller and both edges.
func runPipeline(t *testing.T, roles map[string]*client, cfg *config.Config, log zerolog.Logger) []*dnsupdater.Server {
	t.Helper()
	for _, user := range usersWith("prober") {
		cut := strings.LastIndex(user, "-")
		region, name := strings.TrimPrefix(user[:cut], "prober-"), "p"+user[cut+1:]
		eventstest.Run(t, user, func(ctx context.Context) error {
			return prober.Run(ctx, prober.Options{JS: roles[user].js, Config: cfg, Region: region, Name: name, Log: log})
		})
	}
	for _, user := range usersWith("decider") {
		eventstest.Run(t, user, func(ctx context.Context) error {
			return decider.Run(ctx, decider.Options{JS: roles[user].js, Config: cfg, Name: user, Log: log})
		})
	}
	var servers []*dnsupdater.Server
	for _, user := range usersWith("dns") {
		s, err := dnsupdater.New(dnsupdater.Options{JS: roles[user].js, Config: cfg, Addr: "127.0.0.1:0", DataDir: t.TempDir(), Name: user, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		eventstest.Run(t, user, s.Run)
		servers = append(servers, s)
	}
	eventstest.Run(t, "controller-1", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: roles["controller-1"].js, Config: cfg, Name: "controller-1", Log: log})
	})
	for _, e := range []string{"edge-west", "edge-east"} {
		eventstest.Run(t, e, func(ctx context.Context) error {
			return proxy.Run(ctx, proxy.Options{JS: roles[e].js, Config: cfg, Edge: e, Resolver: servers[0].Addr(), Log: log})
		})
	}
	return servers
}

// The controller reads the routes ROUTES holds from the stream's leader when it starts (see
// events.LastOf), after asking it which subjects hold one: its user may ask both, and has the
// answers.
func TestDeploymentIdentitiesTheControllerReadsTheStoredRoutesFromROUTESsLeader(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stored := mustEvent(t)
	subject := events.AppRouteSubject("edge-west", "shop")
	if _, err := events.Publish(ctx, d.as("controller-1").js, subject, stored); err != nil {
		t.Fatal(err)
	}
	routes, err := d.as("controller-1").js.Stream(ctx, events.StreamRoutes)
	if err != nil {
		t.Fatal(err)
	}
	info, err := routes.Info(ctx, jetstream.WithSubjectFilter(events.SubjectRoutes))
	if err != nil || !maps.Equal(info.State.Subjects, map[string]uint64{subject: 1}) {
		t.Fatalf("controller-1 listed the subjects of ROUTES as %v, %v; want %s alone", info, err, subject)
	}
	var read []string
	err = events.LastOf(ctx, d.as("controller-1").js, events.StreamRoutes, []string{subject, events.AppRouteSubject("edge-east", "shop")},
		func(subject string, _ uint64, e events.Envelope) { read = append(read, subject+" "+e.ID) })
	if want := subject + " " + stored.ID; err != nil || len(read) != 1 || read[0] != want {
		t.Fatalf("controller-1 read %q, %v; want %q", read, err, want)
	}
}
