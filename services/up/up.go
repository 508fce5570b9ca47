package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/natsd"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configure a one-process Detour.
type Options struct {
	// ConfigPath is the configuration file; "" runs the demo.
	ConfigPath string
	// DNSAddr is where the authoritative server listens, UDP and TCP. Default 127.0.0.1:5353.
	DNSAddr string
	// DataDir holds JetStream's files, the DNS snapshot and the NATS credentials (created on
	// first start, 0600). Default ./detour-data.
	DataDir string
	// NATSPort is the embedded server's client port on 127.0.0.1: 0 means 4222, -1 a free port.
	NATSPort int
	// Regions are the probing regions to run a prober for; given, they stand whatever versions
	// come. Default: the configuration's regions, or "local" when it names none, following each
	// version: a region it adds gets a prober, one it removes loses its prober.
	Regions []string
	// DemoControlAddr is where the demo accepts POST /edges/NAME/stop and /start. Default
	// 127.0.0.1:8090. Only the demo (no ConfigPath) serves it.
	DemoControlAddr string
	// MetricsAddr is where every role's Prometheus metrics are served, on /metrics; "" serves
	// none.
	MetricsAddr string
	// APIAddr is where the HTTP API and the status page are served; "" serves neither. Its
	// tokens are in <DataDir>/api-tokens, created with one write token on first start, and
	// read again whenever the file changes.
	APIAddr string
	// Reload makes a --config file be read again at once (SIGHUP); it is also read every half
	// second, and applied as a new version whenever it changed.
	Reload <-chan struct{}
	// CredentialDirs are the directories the files the configuration names (a check's
	// headers_file and send_file, a TSIG key's or a webhook's secret_file, a webhook's
	// url_file) may be in; one elsewhere is refused. Default: none.
	CredentialDirs config.CredentialDirs
	// Out receives the instructions printed at start. Default: nowhere.
	Out io.Writer
	Log zerolog.Logger
}

// Stack is a running one-process Detour.
type Stack struct {
	Config  *config.Config
	NATSURL string
	DNSAddr string
	// MetricsAddr is where /metrics is served, when it is.
	MetricsAddr string
	// APIAddr is where the API and the status page are served, when they are; TokensPath holds
	// their tokens and NewToken the secret of the token made on this start, if one was.
	APIAddr, TokensPath, NewToken string
	// Metrics are every role's collectors.
	Metrics *metrics.Metrics
	// Backends are the demo's application instances, by pool name (empty with a configuration).
	Backends map[string]*demo.Backend
	// NATSCredentials are what every role in the process, and the operator, connect with.
	NATSCredentials natsd.Credentials

	control *demo.Control
	nats    *server.Server
	group   *group
	// roles are the probers and edges, which follow the configuration's versions.
	roles *roleSet
	// unlock releases the data directory's lock (nil before it is taken).
	unlock func()
}

// Start brings every role up and returns once the DNS server answers. A configuration error is
// returned as a *config.Error before anything starts.
func Start(ctx context.Context, o Options) (*Stack, error) {
	doc, name := demo.Config, "demo configuration"
	if o.ConfigPath != "" {
		b, err := os.ReadFile(o.ConfigPath)
		if err != nil {
			return nil, fmt.Errorf("read configuration: %w", err)
		}
		doc, name = b, o.ConfigPath
	}
	cfg, err := config.Parse(name, doc)
	if err != nil {
		return nil, err
	}
	if o.DNSAddr == "" {
		o.DNSAddr = "127.0.0.1:5353"
	}
	if o.DataDir == "" {
		o.DataDir = "detour-data"
	}
	regionsFixed := len(o.Regions) > 0
	if !regionsFixed {
		o.Regions = Regions(cfg)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.DemoControlAddr == "" {
		o.DemoControlAddr = "127.0.0.1:8090"
	}
	st := &Stack{Config: cfg, Backends: map[string]*demo.Backend{}, Metrics: metrics.New()}
	m := st.Metrics
	ok := false
	defer func() {
		if !ok {
			st.stop()
		}
	}()
	if o.ConfigPath == "" {
		for _, p := range cfg.Apps[0].Pools {
			b, err := demo.StartBackend(p.Name, p.Endpoints[0].Address)
			if err != nil {
				return nil, backendHint(err)
			}
			st.Backends[p.Name] = b
		}
	}

	if st.NATSCredentials, err = natsd.LoadCredentials(o.DataDir); err != nil {
		return nil, err
	}
	if st.unlock, err = lockDataDir(o.DataDir); err != nil {
		return nil, err
	}
	creds, err := st.NATSCredentials.Option()
	if err != nil {
		return nil, err
	}
	st.nats, err = natsd.Start(natsd.Options{StoreDir: filepath.Join(o.DataDir, "jetstream"), Port: o.NATSPort, Credentials: st.NATSCredentials})
	if err != nil {
		return nil, err
	}
	st.NATSURL = st.nats.ClientURL()
	nc, err := nats.Connect(st.NATSURL, nats.Name("detour-up"), creds)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	js, err := events.NewJetStream(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, js, cfg.StreamOptions(1)); err != nil {
		return nil, err
	}
	if err := events.ReportProbeBounds(ctx, js, cfg.ProbeRate(), o.Log); err != nil {
		return nil, err
	}
	// A restart with an unchanged file adds no version (config.Apply stores nothing when doc is
	// the active version's), so restarts do not push real history out of what CONFIG keeps.
	_, applied, err := config.Apply(ctx, js, name, doc, config.ApplyOptions{By: "detour-up"})
	if err != nil {
		return nil, err
	}
	cfg.Version, cfg.Applied = applied.Number, applied.Time // the version its roles run, as Watch would have delivered it

	dns, err := dnsupdater.New(dnsupdater.Options{
		JS: js, Config: cfg, Addr: o.DNSAddr, DataDir: filepath.Join(o.DataDir, "dns"),
		Name: "dns-1", Log: o.Log, Metrics: m, Configs: config.Watch(ctx, js, applied.Number, o.Log, "dns", "dns-1"),
		CredentialDirs: o.CredentialDirs,
	})
	if err != nil {
		return nil, err
	}
	st.DNSAddr = dns.Addr()

	g := newGroup(context.WithoutCancel(ctx), o.Log)
	st.group = g
	g.Go("dns", dns.Run)
	g.Go("decider", func(ctx context.Context) error {
		return decider.Run(ctx, decider.Options{JS: js, Config: cfg, Name: "decider-1", Log: o.Log, Metrics: m,
			Configs: config.Watch(ctx, js, applied.Number, o.Log, "decider", "decider-1")})
	})
	g.Go("alerts", func(ctx context.Context) error {
		return alert.Run(ctx, alert.Options{JS: js, Config: cfg, Name: "controller-1", Log: o.Log, CredentialDirs: o.CredentialDirs, Metrics: m,
			Configs: config.Watch(ctx, js, applied.Number, o.Log, "controller", "controller-1")})
	})
	// The controller runs without edges too: it carries out the rollbacks of drills that are due.
	g.Go("controller", func(ctx context.Context) error {
		return controller.Run(ctx, controller.Options{JS: js, Config: cfg, Name: "controller-1", Log: o.Log, Metrics: m,
			Configs: config.Watch(ctx, js, applied.Number, o.Log, "controller", "controller-1")})
	})
	// The probers and edges of the configuration run from the start; a version that adds or
	// removes a region (unless --regions fixed them) or an edge starts or stops its role.
	st.roles = newRoleSet(js, g, o.Log, m, st.DNSAddr, regionsFixed, o.CredentialDirs)
	st.roles.start(cfg, o.Regions)
	g.Go("roles", func(ctx context.Context) error {
		st.roles.follow(ctx, config.Watch(ctx, js, applied.Number, o.Log, "up"))
		return nil
	})
	if o.ConfigPath == "" && len(cfg.Edges) > 0 {
		st.control, err = demo.StartControl(o.DemoControlAddr, st.Edge, g.fail)
		if err != nil {
			return nil, err
		}
	}
	if o.APIAddr != "" {
		if err := st.startAPI(g, js, o); err != nil {
			return nil, err
		}
	}
	if o.MetricsAddr != "" {
		if st.MetricsAddr, err = m.Serve(g.ctx, o.MetricsAddr); err != nil {
			return nil, err
		}
	}
	if o.ConfigPath != "" {
		g.Go("config-file", func(ctx context.Context) error {
			watchFile(ctx, js, o.ConfigPath, o.CredentialDirs, doc, o.Reload, o.Log)
			return nil
		})
	}
	go func() {
		<-ctx.Done()
		g.cancel()
	}()
	if err := waitTCP(g.ctx, st.DNSAddr, 5*time.Second); err != nil {
		// A role that failed meanwhile stopped the others, the DNS server with them: say which.
		g.cancel()
		if gerr := g.Wait(); gerr != nil {
			return nil, gerr
		}
		return nil, err
	}
	ok = true
	st.printInstructions(o.Out, o.ConfigPath == "")
	return st, nil
}

// Wait blocks until the stack stops (its context ended or a role failed), then shuts the rest
// down and reports the first failure.
func (s *Stack) Wait() error {
	err := s.group.Wait()
	s.stop()
	return err
}

func (s *Stack) stop() {
	if s.control != nil {
		_ = s.control.Close()
	}
	if s.group != nil {
		s.group.cancel()
		s.group.wg.Wait()
	}
	if s.roles != nil {
		s.roles.stop()
	}
	for _, b := range s.Backends {
		_ = b.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
	if s.unlock != nil {
		s.unlock()
	}
}

// Edge returns the edge proxy named name running in process, which can be stopped and started,
// or nil when there is none (the configuration's versions add and remove edges).
func (s *Stack) Edge(name string) *demo.Switch {
	if s.roles == nil {
		return nil
	}
	return s.roles.edge(name)
}

// Regions lists the configuration's probing regions (by default the pools' regions), or "local"
// when it names none.
func Regions(cfg *config.Config) []string {
	if r := cfg.ProbingRegions(); len(r) > 0 {
		return r
	}
	return []string{"local"}
}

// backendHint says what to do when a demo backend cannot listen: another instance holds the
// address, or the host lacks the loopback addresses.
func backendHint(err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w (is another detour up running? stop it first, or run your own configuration with --config)", err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%w (the demo needs the loopback addresses 127.0.0.11 and 127.0.0.12; on macOS: sudo ifconfig lo0 alias 127.0.0.11 up, and .12)", err)
	}
	return err
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := (&net.Dialer{Timeout: 100 * time.Millisecond}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dns server on %s did not answer within %s: %w", addr, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startAPI serves the API and the status page, making the tokens file with one write token when
// there is none yet; the API follows the file's changes.
func (s *Stack) startAPI(g *group, js jetstream.JetStream, o Options) error {
	s.TokensPath = filepath.Join(o.DataDir, "api-tokens")
	if _, err := os.Stat(s.TokensPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return fmt.Errorf("make the api tokens: %w", err)
		}
		if s.NewToken, err = api.AddToken(s.TokensPath, "admin", api.ScopeWrite); err != nil {
			return err
		}
	}
	srv, err := api.Listen(api.Options{JS: js, Config: s.Config, Addr: o.APIAddr, TokensPath: s.TokensPath, Log: o.Log})
	if err != nil {
		return err
	}
	s.APIAddr = srv.Addr()
	g.Go("api", srv.Run)
	return nil
}
