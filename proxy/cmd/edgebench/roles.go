package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/proxy"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// serveBackend answers every request with body bytes until ctx is done.
func serveBackend(ctx context.Context, listen string, body int) error {
	payload := bytes.Repeat([]byte("x"), body)
	srv := &http.Server{Addr: listen, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(payload)
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve backend: %w", err)
	}
	return nil
}

// serveEdge runs a Detour edge with an embedded, in-memory JetStream on loopback, forwarding to
// the backend, until ctx is done, writing its CPU profile to profile when set.
func serveEdge(ctx context.Context, listen, backend, profile string) error {
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return fmt.Errorf("profile edge: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("profile edge: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	dir, err := os.MkdirTemp("", "edgebench-nats-")
	if err != nil {
		return fmt.Errorf("start nats: %w", err)
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, NoLog: true, NoSigs: true, StoreDir: dir})
	if err != nil {
		return fmt.Errorf("start nats: %w", err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("start nats: not ready within 10s")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("open jetstream: %w", err)
	}
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Memory: true}); err != nil {
		return err
	}
	cfg, err := config.Parse("edgebench.yaml", fmt.Appendf(nil, `
zones: [{name: bench.test}]
apps:
  - name: app
    fqdn: app.bench.test
    pools: [{name: local, region: bench, endpoints: [{address: %q}]}]
edges:
  - {name: edge, region: bench, hostname: edge.bench.test, address: 127.0.0.1, apps: [{app: app, listen: %q}]}
`, backend, listen))
	if err != nil {
		return err
	}
	return proxy.Run(ctx, proxy.Options{JS: js, Config: cfg, Edge: "edge", Log: zerolog.Nop()})
}
