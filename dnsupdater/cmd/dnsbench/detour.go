package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
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

// changeCounter reads the zone changes the Detour server recorded during a run.
type changeCounter struct{ file string }

func (c *changeCounter) applied() int64 {
	b, err := os.ReadFile(c.file)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// detourTarget runs Detour's server in a child process (this program with the serve-detour
// subcommand), as the peers run in theirs, so that the benchmark's own work does not share its
// Go scheduler. With changes > 0 the child also flips an endpoint's state changes times a second.
func detourTarget(checkPort, changes int, counter *changeCounter, profile string) startFunc {
	return func(ctx context.Context, dir, addr string) (running, error) {
		self, err := os.Executable()
		if err != nil {
			return running{}, fmt.Errorf("find this program: %w", err)
		}
		if counter != nil {
			counter.file = filepath.Join(dir, "changes.txt")
		}
		return startProcess(ctx, dir, self, "serve-detour", "-addr", addr, "-dir", dir,
			"-check-port", strconv.Itoa(checkPort), "-changes", strconv.Itoa(changes), "-cpuprofile", profile)
	}
}

// serveDetour is the serve-detour subcommand: an embedded JetStream, Detour's server on addr
// and, with changes > 0, a publisher of state changes. When ctx ends it writes the number of
// zone changes Detour recorded to dir/changes.txt.
func serveDetour(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve-detour", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to serve")
	dir := fs.String("dir", "", "work directory")
	checkPort := fs.Int("check-port", 0, "the endpoints' port")
	changes := fs.Int("changes", 0, "state changes per second")
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
	cfg, err := config.Parse("dnsbench.yaml", fmt.Appendf(nil, detourConfig, *checkPort))
	if err != nil {
		return fmt.Errorf("parse detour config: %w", err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(*dir, "js"), NoLog: true, NoSigs: true})
	if err != nil {
		return fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("start nats: not ready in 10s")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		err = events.EnsureStreams(ctx, js, events.StreamOptions{Memory: true})
	}
	if err != nil {
		return fmt.Errorf("create streams: %w", err)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	srv, err := dnsupdater.New(dnsupdater.Options{JS: js, Config: cfg, Addr: *addr, Name: "dnsbench", Log: log})
	if err != nil {
		return fmt.Errorf("start detour: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	if *changes > 0 {
		wg.Go(func() { flip(ctx, js, cfg.Apps[0].Pools[0].Endpoints[0].Name, *changes, log) })
	}
	wg.Wait()
	st, err := js.Stream(context.Background(), events.StreamDNS)
	if err != nil {
		return fmt.Errorf("read zone changes: %w", err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		return fmt.Errorf("read zone changes: %w", err)
	}
	return os.WriteFile(filepath.Join(*dir, "changes.txt"), []byte(strconv.FormatUint(info.State.Msgs, 10)), 0o644)
}

// flip appends alternating down and up transitions of the first pool's endpoint.
func flip(ctx context.Context, js jetstream.JetStream, endpoint string, perSecond int, log zerolog.Logger) {
	t := time.NewTicker(time.Second / time.Duration(perSecond))
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
			_, err = events.Publish(ctx, js, events.EndpointStateSubject(app, pool, endpoint), e)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("state change not published")
		}
	}
}
