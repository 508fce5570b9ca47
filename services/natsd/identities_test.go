package natsd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/proxy"
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
	accounts, err := os.ReadFile(filepath.Join("..", "..", "deployments", "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream {store_dir: %q}\ninclude ./accounts.conf\n", filepath.Join(dir, "js"))
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
	west := d.as("prober-us-west")
	d.deniedPublish(west, "prober-us-west", events.StreamProbes, events.ProbeSubject("us-east", "shop", "east", "e1"))
	d.deniedPublish(west, "prober-us-west", events.StreamProbes, events.ProbeBatchSubject("us-east", "p1"))
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
	sub, err := d.as("controller").nc.Subscribe("detour.heartbeat.>", func(m *nats.Msg) { heard <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	west := d.as("edge-west")
	if err := west.nc.Publish("detour.heartbeat.edge-east", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := west.nc.Publish("detour.heartbeat.edge-west", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if got := <-heard; got != "detour.heartbeat.edge-west" {
		t.Errorf("the controller heard %s first, want only edge-west's own heartbeat", got)
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
	for _, user := range []string{"controller", "dns", "prober-us-west", "edge-west"} {
		c := d.as(user)
		d.deniedPublish(c, user, events.StreamState, events.EndpointStateSubject("shop", "west", "w1"))
		d.deniedPublish(c, user, events.StreamState, events.PoolStateSubject("shop", "west"))
	}
	dec := d.as("decider")
	d.deniedPublish(dec, "decider", events.StreamState, events.EdgeStateSubject("edge-west"))
	for _, user := range []string{"decider", "dns", "prober-us-west", "edge-west"} {
		d.deniedPublish(d.as(user), user, events.StreamState, events.OverrideSubject("shop", "west", ""))
	}
	if _, err := events.Publish(context.Background(), dec.js, events.EndpointStateSubject("shop", "west", "w1"), mustEvent(t)); err != nil {
		t.Errorf("the decider cannot append an endpoint transition: %v", err)
	}
}

func TestDeploymentIdentitiesOnlyTheOperatorAndTheControllersAPIChangeTheConfiguration(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	for _, user := range []string{"decider", "dns", "prober-us-west", "edge-west"} {
		d.deniedPublish(d.as(user), user, events.StreamConfig, events.SubjectConfigDoc)
	}
	ctrl := d.as("controller")
	for _, subject := range []string{events.SubjectConfigDoc, events.OverrideSubject("shop", "west", "")} {
		if _, err := events.Publish(context.Background(), ctrl.js, subject, mustEvent(t)); err != nil {
			t.Errorf("the controller's API cannot publish on %s: %v", subject, err)
		}
	}
}

func TestDeploymentIdentitiesOnlyTheControllerPublishesRouteTables(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	for _, user := range []string{"decider", "dns", "prober-us-west", "edge-west", "edge-east"} {
		d.deniedPublish(d.as(user), user, events.StreamRoutes, events.RoutesSubject("edge-west"))
	}
	if _, err := events.Publish(context.Background(), d.as("controller").js, events.RoutesSubject("edge-west"), mustEvent(t)); err != nil {
		t.Errorf("the controller cannot publish a route table: %v", err)
	}
}

func TestDeploymentIdentitiesNoRoleReadsAnotherEdgesRoutesOrDeletesAConsumer(t *testing.T) {
	d := startDeployment(t)
	d.ensureStreams()
	octx, ocancel := context.WithTimeout(context.Background(), time.Second)
	defer ocancel()
	if _, err := d.as("edge-west").js.CreateConsumer(octx, events.StreamRoutes, jetstream.ConsumerConfig{
		FilterSubject: events.RoutesSubject("edge-east")}); err == nil {
		t.Error("edge-west created a consumer of edge-east's route table")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	op := d.as("operator")
	if _, err := op.js.CreateOrUpdateConsumer(ctx, events.StreamState, jetstream.ConsumerConfig{Durable: "audit"}); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"decider", "dns", "controller", "prober-us-west", "edge-west"} {
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

func TestDeploymentIdentitiesAnyRoleCreatesAMissingStreamButNoneChangesOne(t *testing.T) {
	d := startDeployment(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	edge := d.as("edge-west")
	if _, err := events.ProvisionStreams(ctx, edge.js, events.StreamOptions{Memory: true}); err != nil {
		t.Fatalf("edge-west, the first role up, cannot create the streams: %v", err)
	}
	st, err := edge.js.Stream(ctx, events.StreamProbes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxAge = time.Second
	for _, user := range []string{"edge-west", "decider", "prober-us-west"} {
		uctx, ucancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := d.as(user).js.UpdateStream(uctx, cfg)
		ucancel()
		if err == nil {
			t.Errorf("%s changed the PROBES stream", user)
		}
	}
	if info, err := st.Info(ctx); err != nil || info.Config.MaxAge == time.Second {
		t.Errorf("PROBES max age is %v (err %v): a role changed it", info.Config.MaxAge, err)
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
	doc := fmt.Sprintf(`
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
	op := d.as("operator")
	ctx := context.Background()
	cfg, err := config.Publish(ctx, op.js, "test.yaml", []byte(doc), "test")
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	roles := map[string]*client{}
	for _, user := range []string{"prober-us-west", "prober-us-east", "decider", "dns", "controller", "edge-west", "edge-east"} {
		roles[user] = d.as(user)
	}
	for _, r := range []string{"us-west", "us-east"} {
		c := roles["prober-"+r]
		got, err := config.Latest(ctx, c.js)
		if err != nil {
			t.Fatalf("prober-%s reads the configuration: %v", r, err)
		}
		eventstest.Run(t, "prober "+r, func(ctx context.Context) error {
			return prober.Run(ctx, prober.Options{JS: c.js, Config: got, Region: r, Name: "p1", Log: log})
		})
	}
	eventstest.Run(t, "decider", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: roles["decider"].js, Config: cfg, Name: "decider-1", Log: log})
	})
	dns, err := dnsupdater.New(dnsupdater.Options{JS: roles["dns"].js, Config: cfg, Addr: "127.0.0.1:0", DataDir: t.TempDir(), Name: "dns-1", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "dns", dns.Run)
	eventstest.Run(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: roles["controller"].js, Config: cfg, Name: "controller-1", Log: log})
	})
	for _, e := range []string{"edge-west", "edge-east"} {
		eventstest.Run(t, e, func(ctx context.Context) error {
			return proxy.Run(ctx, proxy.Options{JS: roles[e].js, Config: cfg, Edge: e, Resolver: dns.Addr(), Log: log})
		})
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
		{events.StreamState, events.EndpointStateSubject("www", "us-west", "w1")},
		{events.StreamState, events.EndpointStateSubject("www", "us-east", "e1")},
		{events.StreamState, events.PoolStateSubject("www", "us-east")},
		{events.StreamState, events.EndpointStateSubject("shop", "us-west", "w1")},
		{events.StreamState, events.EdgeStateSubject("edge-west")},
		{events.StreamState, events.EdgeStateSubject("edge-east")},
		{events.StreamRoutes, events.RoutesSubject("edge-west")},
		{events.StreamRoutes, events.RoutesSubject("edge-east")},
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
	_ = shopWest.Close()
	eventstest.Eventually(t, 5*time.Second, func() bool { return has(events.StreamDNS, events.ZoneSubject("demo.test.")) },
		"no zone change stored after shop's us-west endpoint died")
	for user, c := range roles {
		if v := c.errors(); len(v) > 0 {
			t.Errorf("%s ran into the server's permissions: %q\n(a role that now needs another subject, stream or consumer: allow exactly that in deployments/nats/accounts.conf)", user, v)
		}
	}
}

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
