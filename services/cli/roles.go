package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/atomicfile"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/metrics"
	"github.com/detourdev/detour/events/redact"
	"github.com/detourdev/detour/prober"
	"github.com/detourdev/detour/proxy"
	"github.com/detourdev/detour/services/alert"
	"github.com/detourdev/detour/services/api"
	"github.com/detourdev/detour/services/configfile"
	"github.com/detourdev/detour/services/controller"
	"github.com/detourdev/detour/services/decider"
	"github.com/detourdev/detour/services/demo"
	"github.com/detourdev/detour/services/natsd"
	"github.com/detourdev/detour/services/up"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	var c common
	var o up.Options
	var regions string
	fs.StringVar(&o.ConfigPath, "config", "", "configuration file (default: the built-in demo)")
	fs.StringVar(&o.DNSAddr, "dns-addr", "127.0.0.1:5353", "address of the authoritative DNS server, UDP and TCP")
	fs.StringVar(&o.DataDir, "data-dir", "detour-data", "directory for JetStream's files and the DNS snapshot")
	fs.IntVar(&o.NATSPort, "nats-port", 4222, "client port of the embedded NATS server on 127.0.0.1 (-1: any free port)")
	fs.StringVar(&regions, "regions", "", "comma-separated probing regions to run a prober for, whatever versions come (default: the configuration's, following its versions)")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", "127.0.0.1:9464", "where every role's Prometheus metrics are served on /metrics (\"\": nowhere)")
	fs.StringVar(&o.APIAddr, "api-addr", "127.0.0.1:8088", "where the HTTP API and the status page are served (\"\": nowhere)")
	credentialDirs := registerCredentialDirs(fs)
	c.register(fs, false)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.CredentialDirs, err = credentialDirs.open(ownSecret{"--data-dir", &o.DataDir, "the NATS key it keeps"}); err != nil {
		return err
	}
	if regions != "" {
		o.Regions = strings.Split(regions, ",")
	}
	if err := checkUp(o); err != nil {
		return err
	}
	var warnings []string
	cfg, err := config.Parse("demo configuration", demo.Config)
	if err != nil {
		return err
	}
	if o.ConfigPath != "" {
		doc, err := os.ReadFile(o.ConfigPath)
		if err != nil {
			return usageErr("read configuration: %w", err)
		}
		if cfg, err = configfile.Check(o.ConfigPath, doc); err != nil {
			return err
		}
		if err := configfile.CheckSecrets(o.ConfigPath, doc, cfg, o.CredentialDirs); err != nil {
			return err
		}
		warnings = configfile.Warnings(o.ConfigPath, doc, cfg)
	}
	for _, r := range o.Regions {
		if !cfg.RegionAllowed(r) {
			return usageErr("--regions: %q is not among the configuration's probing regions %v: its results would be dropped", r, cfg.ProbingRegions())
		}
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn().Str("problem", w).Msg("configuration valid but probably not meant")
	}
	o.Out, o.Log = stdout, log
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	o.Reload = reload
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	st, err := up.Start(ctx, o)
	if err != nil {
		return err
	}
	return st.Wait()
}

// role is what every single-role command shares: a NATS connection and the configuration.
type role struct {
	common
	name        string
	replicas    int
	metricsAddr string
	// version is the configuration version the role started with, when it came from CONFIG.
	version uint64
	// metrics are the role's collectors when --metrics-addr is set, else nil.
	metrics *metrics.Metrics
	// check, when set, validates the command's own flags before anything starts.
	check func() error
	// streams are those the role creates if they are missing: Streams(role).
	streams []string
	// refused hears the server refuse the role's publishes.
	refused refusals
	// dataDir, when set, keeps the active configuration, so that the role (a data-plane one)
	// starts from it while NATS is away.
	dataDir *string
	// credentialDirs, when set (registerCredentialDirs), are opened into dirs as the flags are
	// checked: where the role reads the files its configuration names, none holding own.
	credentialDirs *credentialDirFlag
	dirs           config.CredentialDirs
	own            []ownSecret
}

func (r *role) start(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) (jetstream.JetStream, *config.Config, zerolog.Logger, error) {
	r.register(fs, true)
	fs.IntVar(&r.replicas, "replicas", envInt("DETOUR_REPLICAS", 1), "replicas of each stream and bucket this role creates if it is missing ($DETOUR_REPLICAS)")
	fs.StringVar(&r.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address's /metrics (default: none)")
	if err := parse(fs, args, stderr); err != nil {
		return nil, nil, zerolog.Logger{}, err
	}
	if fs.NArg() > 0 {
		return nil, nil, zerolog.Logger{}, usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := r.checkFlags(); err != nil {
		return nil, nil, zerolog.Logger{}, err
	}
	if r.credentialDirs != nil {
		var err error
		own := r.own
		if seed := os.Getenv("DETOUR_NATS_NKEY"); seed != "" {
			own = append(own, ownSecret{"$DETOUR_NATS_NKEY", &seed, "the NATS key it connects with"})
		}
		if r.dirs, err = r.credentialDirs.open(own...); err != nil {
			return nil, nil, zerolog.Logger{}, err
		}
	}
	log, err := r.logger(stderr)
	if err != nil {
		return nil, nil, log, err
	}
	js, err := connectRole(r.natsURL, "detour-"+fs.Name()+"-"+r.name, &r.refused, log)
	if err != nil {
		return nil, nil, log, err
	}
	cfg, err := r.loadConfig(ctx, js, log)
	if ce := (*config.Error)(nil); (errors.As(err, &ce) || errors.Is(err, config.ErrNotAVersion)) && r.configPath == "" {
		cfg, err = r.startBefore(ctx, js, r.version, err, log)
	}
	if err != nil {
		return nil, nil, log, err
	}
	go provision(ctx, js, cfg.StreamOptions(r.replicas), r.streams, &r.refused, log)
	if r.metricsAddr != "" {
		r.metrics = metrics.New()
		addr, err := r.metrics.Serve(ctx, r.metricsAddr)
		if err != nil {
			return nil, nil, log, err
		}
		log.Info().Str("addr", addr).Msg("serving metrics")
	}
	return js, cfg, log, nil
}

// Streams names the streams and buckets that the role (prober, decider, dns, controller or edge)
// creates, with the configured replicas, when it finds them missing and its NATS user may create
// them (no accounts, or one user for everything): those it writes, and the ones it cannot work
// without. In deployments/nats/accounts.conf no role's user may create a stream, since a request
// to create one carries the stream's definition in its body, where permissions cannot look: a role
// could give a missing stream any subjects, sources or republishing. There `detour apply`, run as
// the operator, creates and updates them all, and a role that finds one missing waits for it.
func Streams(role string) []string {
	switch role {
	case "prober":
		return []string{events.StreamProbes, events.StreamProbers}
	case "decider":
		return []string{events.StreamState, events.StreamProbes}
	case "dns":
		return []string{events.StreamState, events.StreamDNS}
	case "controller":
		return []string{events.StreamState, events.StreamRoutes, events.StreamDrills, events.StreamAlerts}
	case "edge":
		return []string{events.StreamRoutes}
	}
	return nil
}

// provision creates the named streams and buckets that do not exist yet, with the configured
// replicas, and warns of those that have fewer: losing one JetStream node may then stop them. It
// waits for the connection first, so a role that starts without NATS provisions when it comes.
// Those the server refuses to let the role create (only the operator creates streams in the
// compose deployment) it names in one line, with the fix: the role's followers wait for them.
func provision(ctx context.Context, js jetstream.JetStream, o events.StreamOptions, names []string, refused *refusals, log zerolog.Logger) {
	for !js.Conn().IsConnected() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	var short []events.Shortfall
	var missing []string
	var errs []error
	for _, name := range names {
		pctx, wasRefused := refused.refusable(ctx, "$JS.API.STREAM.CREATE."+name)
		s, err := events.ProvisionStreams(pctx, js, o, name)
		if wasRefused() {
			missing = append(missing, name)
			continue
		}
		short = append(short, s...)
		errs = append(errs, err)
	}
	for _, s := range short {
		log.Warn().Str("stream", s.Stream).Int("replicas", s.Replicas).Int("configured", s.Configured).
			Msg("stream has fewer replicas than configured; run detour apply --replicas to raise them")
	}
	if len(missing) > 0 {
		log.Warn().Strs("streams", missing).
			Msg("streams missing, and this role may not create them; run detour apply as the operator: the role waits for them")
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn().Err(err).Msg("streams not provisioned")
	}
	if slices.Contains(names, events.StreamProbes) && !slices.Contains(missing, events.StreamProbes) {
		if err := events.ReportProbeBounds(ctx, js, o.ProbeRate, log); err != nil {
			log.Warn().Err(err).Msg("probe results stream bounds unknown")
		}
	}
}

// loadConfig reads --config, or else waits for an active configuration on the CONFIG stream
// (which `detour apply` publishes), so roles may start before it. A role with a data directory
// keeps the active configuration there and, when NATS does not answer, starts from that copy.
func (r *role) loadConfig(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (*config.Config, error) {
	if r.configPath != "" {
		return loadFile(r.configPath)
	}
	if r.dataDir != nil && !js.Conn().IsConnected() {
		// NATS did not answer the first connection attempt: a data-plane role serves at once
		// from the last configuration it saw, rather than after a request times out.
		if cfg, err := loadConfigCopy(*r.dataDir); cfg != nil {
			log.Warn().Str("file", configCopy(*r.dataDir)).Msg("nats unreachable; starting from the last configuration seen")
			return cfg, nil
		} else if err != nil {
			log.Warn().Err(err).Msg("configuration copy unusable")
		}
	}
	warned := false
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := config.Active(actx, js)
		cancel()
		var cfg *config.Config
		if err == nil {
			cfg, err = v.Config()
		}
		r.version = v.Number
		var ce *config.Error
		if err == nil && r.dataDir != nil {
			if err := saveConfigCopy(*r.dataDir, v.Document); err != nil {
				log.Warn().Err(err).Msg("configuration copy not saved")
			}
		}
		// A version this binary cannot parse, or a last message that is no version at all
		// (published on the subject by hand) with a version before it, is left to startBefore:
		// waiting would wait until someone applied a document over it. With no version before
		// it, the role waits for one, as while nothing was applied: it returned the message's
		// decoding error, and did not start.
		if err == nil || errors.As(err, &ce) || errors.Is(err, config.ErrNotAVersion) && versionBefore(ctx, js, v.Number) {
			return cfg, err
		}
		if r.dataDir != nil {
			if cfg, cerr := loadConfigCopy(*r.dataDir); cfg != nil {
				log.Warn().Err(err).Str("file", configCopy(*r.dataDir)).Msg("nats unreachable; starting from the last configuration seen")
				return cfg, nil
			} else if cerr != nil {
				log.Warn().Err(cerr).Msg("configuration copy unusable")
			}
		}
		if !warned {
			log.Warn().Err(err).Msg("waiting for the active configuration")
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// versionBefore reports whether CONFIG may hold a version before active that parses: false only
// once it is known to hold none (config.NewestParsed's ErrNoVersion).
func versionBefore(ctx context.Context, js jetstream.JetStream, active uint64) bool {
	_, _, err := config.NewestParsed(ctx, js, active)
	return !errors.Is(err, config.ErrNoVersion)
}

// startBefore finds, when the active version (active) is one the role cannot parse, or a message
// that is no version at all (parseErr), the newest version before it that parses and returns its configuration, to start on it as the
// role's running peers keep it. r.version becomes that version, so that the role's configuration
// watch reads the versions after it and records its refusal of each one it cannot apply, as it
// would have running. With no such version it returns parseErr.
func (r *role) startBefore(ctx context.Context, js jetstream.JetStream, active uint64, parseErr error, log zerolog.Logger) (*config.Config, error) {
	v, cfg, err := config.NewestParsed(ctx, js, active)
	if err != nil {
		log.Warn().Err(err).Msg("no earlier configuration version to start on")
		return nil, parseErr
	}
	log.Warn().Uint64("active", active).Uint64("version", v.Number).
		Msg("the active configuration version does not parse; starting on the newest one that does")
	r.version = v.Number
	if r.dataDir != nil {
		if err := saveConfigCopy(*r.dataDir, v.Document); err != nil {
			log.Warn().Err(err).Msg("configuration copy not saved")
		}
	}
	return cfg, nil
}

// connectRole opens a role's connection: it never fails because NATS is away (it goes on trying
// in the background, every quarter second), notices a dead server within seconds, and logs each
// disconnection and reconnection once. A refusal someone awaits in refused is theirs to report;
// it logs every other error the server reports, each once a minute: a reader that a server
// refuses (an older accounts.conf) asks again many times a second.
func connectRole(url, name string, refused *refusals, log zerolog.Logger) (jetstream.JetStream, error) {
	repeats := logs.NewRepeats(time.Minute)
	return connect(url, name, nats.RetryOnFailedConnect(true), nats.ReconnectWait(250*time.Millisecond), nats.Timeout(time.Second),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("disconnected from nats; serving what this role has")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", redact.String(nc.ConnectedUrl())).Msg("connected to nats")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if refused.heard(err) {
				return
			}
			ev := repeats.Gate(log.Warn(), err.Error()).Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats error")
		}))
}

// connectWait bounds an operator's command's handshake with each NATS server (nats.go's default
// is 2 s, which a cluster far away or loaded, 2 s or more a round trip, did not meet). A role sets
// its own, shorter: it connects in the background, again and again.
const connectWait = 10 * time.Second

// connect opens a connection to the NATS servers in url (comma-separated). Replies come under the
// inbox prefix of the user the URLs name (events.InboxPrefix), the only one that user may read.
func connect(url, name string, extra ...nats.Option) (jetstream.JetStream, error) {
	opts := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.Timeout(connectWait),
		nats.CustomInboxPrefix(events.InboxPrefix(natsUser(url)))}, extra...)
	if seed := os.Getenv("DETOUR_NATS_NKEY"); seed != "" { // the nkey seed file detour up made
		o, err := natsd.SeedOption(seed)
		if err != nil {
			return nil, fmt.Errorf("DETOUR_NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", redact.String(url), err)
	}
	js, err := events.NewJetStream(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	return js, nil
}

// connectWithin connects as connect does, within ctx's bound: an operator's command waits for
// the cluster up to its --timeout in all, and nats.go waits up to connectWait for each server's
// handshake (a server hung after accept, a host whose connections go unanswered), one server
// after another, so --timeout 1s waited 20 s for two such servers. Each handshake waits at
// most a little past what is left of ctx, so ctx's end is what stops it, and an error once ctx
// ended wraps ctx's error (unanswered names the bound).
func connectWithin(ctx context.Context, url, name string) (jetstream.JetStream, error) {
	wait := connectWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(deadline)+250*time.Millisecond), 250*time.Millisecond)
	}
	type connected struct {
		js  jetstream.JetStream
		err error
	}
	done := make(chan connected, 1)
	go func() {
		js, err := connect(url, name, nats.Timeout(wait))
		done <- connected{js, err}
	}()
	select {
	case c := <-done:
		if c.err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("connect to nats at %s: %w (%v)", redact.String(url), ctx.Err(), c.err)
		}
		return c.js, c.err
	case <-ctx.Done():
		go func() { // the connection made after the command gave up on it is closed
			if c := <-done; c.err == nil {
				c.js.Conn().Close()
			}
		}()
		return nil, fmt.Errorf("connect to nats at %s: %w", redact.String(url), ctx.Err())
	}
}

// heartbeatIs explains a prober's heartbeat, for the errors of --member-ttl.
const heartbeatIs = "the heartbeat is a third of the configuration's shortest check interval, within 100ms and 1s"

func runProber(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("prober", flag.ContinueOnError)
	var region string
	var memberTTL time.Duration
	r := role{check: func() error {
		if memberTTL < 0 {
			return usageErr("--member-ttl: must not be negative, got %s", memberTTL)
		}
		// What no configuration allows is refused before the role waits for NATS to hand it one.
		if memberTTL != 0 {
			if err := prober.CheckMemberTTL(memberTTL, prober.MinHeartbeat); err != nil {
				return usageErr("--member-ttl: %w: %s", err, heartbeatIs)
			}
		}
		return checkToken("--region", region)
	}, streams: Streams("prober")}
	fs.StringVar(&region, "region", "", "probing region this worker belongs to (required)")
	fs.StringVar(&r.name, "name", hostname(), "this worker's name, unique in its region")
	fs.DurationVar(&memberTTL, "member-ttl", 0, "how long this worker counts as live after each heartbeat: its checks move to the others this long after it dies, and a stall of this less a heartbeat is survived; at least two heartbeats ("+heartbeatIs+") (default: three heartbeats, at least 1s)")
	r.credentialDirs = registerCredentialDirs(fs)
	js, cfg, log, err := r.start(ctx, fs, args, stderr)
	if err != nil {
		return err
	}
	if memberTTL != 0 {
		if err := prober.CheckMemberTTL(memberTTL, prober.DefaultHeartbeat(cfg)); err != nil {
			return usageErr("--member-ttl: %w: %s", err, heartbeatIs)
		}
	}
	if !cfg.RegionAllowed(region) {
		return usageErr("--region: %q is not among the configuration's probing regions %v: its results would be dropped", region, cfg.ProbingRegions())
	}
	o := prober.Options{JS: js, Config: cfg, Region: region, Name: r.name, Log: log, Metrics: r.metrics, CredentialDirs: r.dirs,
		MemberTTL: memberTTL}
	if r.configPath == "" { // follow the versions `detour apply` makes
		// Its refusals go on the subject its NATS user may publish, named for that user
		// (events.WriterToken), whatever --name says; so for each role below.
		o.Configs = config.Watch(ctx, js, r.version, log, "prober", region, events.WriterToken(js.Conn(), r.name))
	}
	return prober.Run(ctx, o)
}

func runDecider(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("decider", flag.ContinueOnError)
	r := role{streams: Streams("decider")}
	fs.StringVar(&r.name, "name", hostname(), "this replica's name, unique among the replicas (the source of the transitions it appends)")
	js, cfg, log, err := r.start(ctx, fs, args, stderr)
	if err != nil {
		return err
	}
	o := decider.Options{JS: js, Config: cfg, Name: r.name, Log: log, Metrics: r.metrics}
	if r.configPath == "" { // follow the versions `detour apply` makes
		o.Configs = config.Watch(ctx, js, r.version, log, "decider", events.WriterToken(js.Conn(), r.name))
	}
	return decider.Run(ctx, o)
}

func runDNS(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	var addr, dataDir string
	r := role{check: func() error { return checkHostPort("--addr", addr) },
		streams: Streams("dns"), dataDir: &dataDir}
	fs.StringVar(&r.name, "name", hostname(), "this server's name")
	fs.StringVar(&addr, "addr", "127.0.0.1:5353", "listen address, UDP and TCP")
	fs.StringVar(&dataDir, "data-dir", "detour-dns", "directory for the last-known-good snapshot and configuration")
	r.credentialDirs = registerCredentialDirs(fs)
	js, cfg, log, err := r.start(ctx, fs, args, stderr)
	if err != nil {
		return err
	}
	o := dnsupdater.Options{JS: js, Config: cfg, Addr: addr, DataDir: dataDir, Name: r.name, Log: log, Metrics: r.metrics, CredentialDirs: r.dirs}
	if r.configPath == "" { // follow the versions `detour apply` makes
		// Its refusals go on its writer's subject, as its zone versions do: the subject its NATS
		// user may publish, whatever --name says.
		o.Configs = config.Watch(ctx, js, r.version, log, "dns", events.WriterToken(js.Conn(), r.name))
	}
	srv, err := dnsupdater.New(o)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

func runEdge(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	var resolver, region, dataDir string
	r := role{check: func() error { return checkEdgeFlags(region, resolver) }, streams: Streams("edge"), dataDir: &dataDir}
	fs.StringVar(&r.name, "name", "", "which configured edge this process is (required)")
	fs.StringVar(&region, "region", "", "the edge's region; when given it must match the configuration")
	fs.StringVar(&resolver, "resolver", "127.0.0.1:5353", "DNS server that resolves peer edge hostnames")
	fs.StringVar(&dataDir, "data-dir", "detour-edge", "directory for the last route table and configuration, served at start until NATS answers")
	js, cfg, log, err := r.start(ctx, fs, args, stderr)
	if err != nil {
		return err
	}
	e := cfg.Edge(r.name)
	if r.name == "" || e == nil {
		return usageErr("--name: want one of the configured edges, got %q", r.name)
	}
	if region != "" && region != e.Region {
		return usageErr("--region: edge %q is in region %q in the configuration, not %q", r.name, e.Region, region)
	}
	o := proxy.Options{JS: js, Config: cfg, Edge: r.name, Resolver: resolver, DataDir: dataDir, Log: log, Metrics: r.metrics}
	if r.configPath == "" { // follow the versions `detour apply` makes
		o.Configs = config.Watch(ctx, js, r.version, log, "edge", r.name)
	}
	return proxy.Run(ctx, o)
}

func runController(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	var apiAddr, tokensPath string
	r := role{streams: Streams("controller"), check: func() error { return checkOptionalHostPort("--api-addr", apiAddr) }}
	fs.StringVar(&r.name, "name", hostname(), "this replica's name, unique among the replicas (the source of the transitions it appends)")
	fs.StringVar(&apiAddr, "api-addr", "127.0.0.1:8088", "where the HTTP API and the status page are served (\"\": nowhere)")
	fs.StringVar(&tokensPath, "api-tokens", "detour-api-tokens", "the API's tokens file (made with one write token if missing; see detour token)")
	r.credentialDirs = registerCredentialDirs(fs)
	r.own = []ownSecret{{"--api-tokens", &tokensPath, "the API's tokens"}}
	js, cfg, log, err := r.start(ctx, fs, args, stderr)
	if err != nil {
		return err
	}
	if err := alert.CheckHooks(cfg, r.dirs); err != nil {
		return err
	}
	var parts []part
	if apiAddr != "" {
		srv, err := startAPI(js, cfg, apiAddr, tokensPath, stdout, log)
		if err != nil {
			return err
		}
		parts = append(parts, part{"api", srv.Run})
	}
	parts = append(parts, part{"alerts", func(ctx context.Context) error {
		ao := alert.Options{JS: js, Config: cfg, Name: r.name, Log: log, CredentialDirs: r.dirs, Metrics: r.metrics}
		if r.configPath == "" { // follow the versions `detour apply` makes
			ao.Configs = config.Watch(ctx, js, r.version, log, "controller", events.WriterToken(js.Conn(), r.name))
		}
		return alert.Run(ctx, ao)
	}})
	return runParts(ctx, log, func(ctx context.Context) error {
		co := controller.Options{JS: js, Config: cfg, Name: r.name, Log: log, Metrics: r.metrics}
		if r.configPath == "" { // follow the versions `detour apply` makes
			co.Configs = config.Watch(ctx, js, r.version, log, "controller", events.WriterToken(js.Conn(), r.name))
		}
		return controller.Run(ctx, co)
	}, parts...)
}

// part is one of the parts a command runs beside its main one, named for the logs.
type part struct {
	name string
	run  func(context.Context) error
}

// runParts runs main and parts side by side until main returns, then stops the parts. A part
// that stops on its own, failing or not, is logged at once and stops main and the other parts:
// the command then fails naming it, so that whatever supervises the process (systemd, compose)
// sees it exit non-zero and restarts it, rather than a controller running on without its API or
// its alerts.
func runParts(ctx context.Context, log zerolog.Logger, main func(context.Context) error, parts ...part) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, len(parts))
	for _, p := range parts {
		go func() {
			err := p.run(ctx)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				err = fmt.Errorf("%s: %w", p.name, err)
				log.Error().Str("part", p.name).Err(err).Msg("part of the process failed; stopping the process")
				cancel()
			}
			done <- err
		}()
	}
	err := main(ctx)
	cancel()
	for range parts {
		err = errors.Join(err, <-done)
	}
	return err
}

// startAPI binds the API with the tokens file at path, which it follows while it runs, making the
// file with one write token, shown once on stdout, when it does not exist.
func startAPI(js jetstream.JetStream, cfg *config.Config, addr, path string, stdout io.Writer, log zerolog.Logger) (*api.Server, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		secret, err := api.AddToken(path, "admin", api.ScopeWrite)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "made %s with a write token named admin; it is shown only now:\n  export DETOUR_TOKEN=%s\n", path, secret)
	}
	return api.Listen(api.Options{JS: js, Config: cfg, Addr: addr, TokensPath: path, Log: log})
}

// configCopyFile is the name of the active configuration's copy in a role's data directory.
const configCopyFile = "active-config.yaml"

// configCopy is where a role keeps the active configuration in its data directory.
func configCopy(dir string) string { return filepath.Join(dir, configCopyFile) }

// saveConfigCopy keeps doc as the last active configuration seen (0600: it may hold secrets),
// whole and durably: a role starting without NATS starts from it.
func saveConfigCopy(dir, doc string) error {
	if err := atomicfile.Write(dir, configCopyFile, atomicfile.Bytes([]byte(doc))); err != nil {
		return fmt.Errorf("save configuration copy: %w", err)
	}
	return nil
}

// loadConfigCopy returns the last active configuration seen, or nil when there is none.
func loadConfigCopy(dir string) (*config.Config, error) {
	doc, err := os.ReadFile(configCopy(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration copy: %w", err)
	}
	return config.ParseStored(configCopy(dir), doc)
}
