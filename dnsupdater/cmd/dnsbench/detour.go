package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/detourdev/detour/dnsupdater"
	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// changeFlips is what a run of Detour's server has made of state changes beside it: perSecond
// changes a second, published to STATE, or with aside to a stream the server does not follow;
// counter holds the last run's count, and tally the count over the rounds.
type changeFlips struct {
	perSecond int
	aside     bool
	counter   changeCounter
	tally     changeTally
}

// stream is the stream whose messages count the changes of a run: DNS, where the server records
// its zone changes, or the stream aside, which holds the changes published there.
func (f *changeFlips) stream() string {
	if f.aside {
		return streamAside
	}
	return events.StreamDNS
}

// subject is where a change of STATE's subject s is published: s itself, or with aside its
// subject in the stream aside.
func (f *changeFlips) subject(s string) string {
	if f.aside {
		return subjectAside + s
	}
	return s
}

// changeCounter holds what the changes of the last run counted (the zone changes the Detour
// server recorded, or the changes published aside where it follows none), and how long the
// changes were made in it.
type changeCounter struct {
	n        uint64
	changing time.Duration
}

// take returns the changes of the last run and how long they went on, and forgets them.
func (c *changeCounter) take() (uint64, time.Duration) {
	n, changing := c.n, c.changing
	*c = changeCounter{}
	return n, changing
}

// detourTarget runs Detour's DNS server in a child process of its own (this program with the
// serve-detour subcommand), as the peers run in theirs, following a JetStream that runs in this
// program, as `detour dns` follows a NATS it does not host: the server's process holds the DNS
// server alone, its CPU time is the DNS server's, and no NATS goroutine or garbage shares its
// scheduler. With f this program also flips an endpoint's state f.perSecond times a second (the
// decider's part), and with f.aside publishes the same changes to a stream the server does not
// follow, so that the run pays this program's part of them (its JetStream storing them) without
// the server's. A variant's server is another build's serve-detour (its program) or this one's,
// with the variant's environment added.
func detourTarget(checkPort int, f *changeFlips, profile string, v variant) startFunc {
	return func(ctx context.Context, dir, addr string) (running, error) {
		prog := v.program
		if prog == "" {
			self, err := os.Executable()
			if err != nil {
				return running{}, fmt.Errorf("find this program: %w", err)
			}
			prog = self
		}
		h, err := startJetStream(ctx, dir)
		if err != nil {
			return running{}, err
		}
		srv, err := startProcessEnv(ctx, dir, v.env, prog, "serve-detour", "-addr", addr, "-nats", h.ns.ClientURL(),
			"-check-port", strconv.Itoa(checkPort), "-cpuprofile", profile)
		if err != nil {
			h.close()
			return running{}, err
		}
		fctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		began := time.Now()
		if f != nil && f.perSecond > 0 {
			wg.Go(func() { flip(fctx, h.js, checkPort, f) })
		}
		return running{
			cpu: srv.cpu,
			pid: srv.pid,
			stop: func() {
				cancel()
				wg.Wait()
				changing := time.Since(began)
				srv.stop()
				if f != nil {
					f.counter.n, f.counter.changing = h.messages(f.stream()), changing
				}
				h.close()
			},
		}, nil
	}
}

// jetStream is the NATS server with JetStream that one Detour run follows.
type jetStream struct {
	ns *server.Server
	nc *nats.Conn
	js jetstream.JetStream
}

// streamAside is the stream the control run's changes go to, which Detour's server does not
// follow, and subjectAside the prefix of its subjects.
const (
	streamAside  = "DNSBENCH_ASIDE"
	subjectAside = "dnsbench.aside."
)

// startJetStream starts a NATS server with JetStream on a free loopback port, storing in
// dir/js, and creates Detour's streams in memory, and the stream aside.
func startJetStream(ctx context.Context, dir string) (*jetStream, error) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"), NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	h := &jetStream{ns: ns}
	if !ns.ReadyForConnections(10 * time.Second) {
		h.close()
		return nil, fmt.Errorf("start nats: not ready in 10s")
	}
	if h.nc, err = nats.Connect(ns.ClientURL()); err != nil {
		h.close()
		return nil, fmt.Errorf("connect nats: %w", err)
	}
	h.js, err = jetstream.New(h.nc)
	if err == nil {
		err = events.EnsureStreams(ctx, h.js, events.StreamOptions{Memory: true})
	}
	if err == nil {
		_, err = h.js.CreateStream(ctx, jetstream.StreamConfig{Name: streamAside, Subjects: []string{subjectAside + ">"}, Storage: jetstream.MemoryStorage})
	}
	if err != nil {
		h.close()
		return nil, fmt.Errorf("create streams: %w", err)
	}
	return h, nil
}

// messages is the number of messages in a stream: in DNS, the zone changes the DNS server
// recorded.
func (h *jetStream) messages(stream string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := h.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func (h *jetStream) close() {
	if h.nc != nil {
		h.nc.Close()
	}
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
}

// benchConfig is Detour's configuration of the benchmark zone, health-checking checkPort.
func benchConfig(checkPort int) (*config.Config, error) {
	cfg, err := config.Parse("dnsbench.yaml", fmt.Appendf(nil, detourConfig, checkPort))
	if err != nil {
		return nil, fmt.Errorf("parse detour config: %w", err)
	}
	return cfg, nil
}

// serveDetour is the serve-detour subcommand: Detour's server on addr, following the
// JetStream at the NATS URL until ctx ends.
func serveDetour(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve-detour", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to serve")
	url := fs.String("nats", "", "NATS URL of the JetStream to follow")
	checkPort := fs.Int("check-port", 0, "the endpoints' port")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := benchConfig(*checkPort)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*url)
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("connect jetstream: %w", err)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	srv, err := dnsupdater.New(dnsupdater.Options{JS: js, Config: cfg, Addr: *addr, Name: "dnsbench", Log: log})
	if err != nil {
		return fmt.Errorf("start detour: %w", err)
	}
	return srv.Run(ctx)
}

// flip appends alternating down and up transitions of the first pool's endpoint, f.perSecond
// times a second, until ctx ends: to STATE, or with f.aside to the stream aside.
func flip(ctx context.Context, js jetstream.JetStream, checkPort int, f *changeFlips) {
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	cfg, err := benchConfig(checkPort)
	if err != nil {
		log.Error().Err(err).Msg("no state changes")
		return
	}
	endpoint := cfg.Apps[0].Pools[0].Endpoints[0].Name
	t := time.NewTicker(time.Second / time.Duration(f.perSecond))
	defer t.Stop()
	down := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		typ, from, to := events.TypeEndpointDown, events.StatusUp, events.StatusDown
		if !down {
			typ, from, to = events.TypeEndpointUp, events.StatusDown, events.StatusUp
		}
		down = !down
		const app, pool = "shop", "west"
		e, err := events.New(typ, "dnsbench", time.Now(), events.Transition{App: app, Pool: pool, Endpoint: endpoint, From: from, To: to, Reason: "dnsbench"})
		if err == nil {
			_, err = events.Publish(ctx, js, f.subject(events.EndpointStateSubject(app, pool, endpoint)), e)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("state change not published")
		}
	}
}
