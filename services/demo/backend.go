package demo

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Config is the demo configuration document.
//
//go:embed demo.yaml
var Config []byte

// Backend is a small HTTP application instance. While it is failing, every request but the
// control ones gets a 503, as an application whose database went away would answer.
type Backend struct {
	name    string
	failing atomic.Bool
	srv     *http.Server
	ln      net.Listener
}

// Paths of the control endpoints.
const (
	FailPath    = "/-/fail"
	RecoverPath = "/-/recover"
)

// StartBackend listens on addr and serves until Close.
func StartBackend(name, addr string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start demo backend %s: %w", name, err)
	}
	b := &Backend{name: name, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+FailPath, func(w http.ResponseWriter, _ *http.Request) {
		b.failing.Store(true)
		fmt.Fprintf(w, "%s is now failing\n", b.name)
	})
	mux.HandleFunc("POST "+RecoverPath, func(w http.ResponseWriter, _ *http.Request) {
		b.failing.Store(false)
		fmt.Fprintf(w, "%s is healthy again\n", b.name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if b.failing.Load() {
			http.Error(w, b.name+" is failing", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "hello from %s (%s %s)\n", b.name, r.Method, r.URL.Path)
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Addr is the address the backend listens on.
func (b *Backend) Addr() string { return b.ln.Addr().String() }

// SetFailing makes the backend fail (true) or recover (false).
func (b *Backend) SetFailing(v bool) { b.failing.Store(v) }

// Close stops the backend and closes its connections.
func (b *Backend) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stop demo backend %s: %w", b.name, err)
	}
	return nil
}
