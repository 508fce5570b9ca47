package demo

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Switch runs a role that the demo can stop and start again, as a crash and a restart would.
type Switch struct {
	name string
	run  func(context.Context) error

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	parent context.Context
}

// NewSwitch returns a switch for the role run, started by Start.
func NewSwitch(name string, run func(context.Context) error) *Switch {
	return &Switch{name: name, run: run}
}

// Start runs the role under ctx (or, after Stop, under the context it was first started with)
// until Stop or ctx ends. A role that fails, or returns while neither asked it to stop, reports
// through report at once, with the switch's name.
func (s *Switch) Start(ctx context.Context, report func(role string, err error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	if s.parent == nil {
		s.parent = ctx
	}
	rctx, cancel := context.WithCancel(s.parent)
	s.cancel, s.done = cancel, make(chan struct{})
	done := s.done
	go func() {
		defer close(done)
		err := s.run(rctx)
		if err == nil && rctx.Err() == nil {
			err = errors.New("stopped on its own")
		}
		if err != nil {
			report(s.name, err)
		}
	}()
}

// Stop ends the role and waits for it; it reports whether it was running.
func (s *Switch) Stop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		return false
	}
	s.cancel()
	<-s.done
	s.done = nil
	return true
}

// Running reports whether the role runs.
func (s *Switch) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done != nil
}

// Control serves the demo's switches over HTTP on loopback:
// POST /edges/NAME/stop and POST /edges/NAME/start, each with "Authorization: Bearer TOKEN".
// Requests from other than a loopback address, and requests without the token (which a web
// page the operator visits cannot know), are refused.
type Control struct {
	srv   *http.Server
	ln    net.Listener
	token string
}

// StartControl listens on addr and serves the switches that edge returns by edge name (nil for
// none), behind a fresh random token.
func StartControl(addr string, edge func(name string) *Switch, report func(role string, err error)) (*Control, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("start demo control: make token: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start demo control: %w", err)
	}
	c := &Control{ln: ln, token: hex.EncodeToString(b[:])}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /edges/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		sw := edge(r.PathValue("name"))
		if sw == nil {
			http.Error(w, fmt.Sprintf("no edge %q in the demo", r.PathValue("name")), http.StatusNotFound)
			return
		}
		switch r.PathValue("action") {
		case "stop":
			if sw.Stop() {
				fmt.Fprintf(w, "%s stopped: its listeners are closed and its heartbeats stop\n", sw.name)
			} else {
				fmt.Fprintf(w, "%s was not running\n", sw.name)
			}
		case "start":
			sw.Start(r.Context(), report)
			fmt.Fprintf(w, "%s started\n", sw.name)
		default:
			http.Error(w, "want stop or start", http.StatusNotFound)
		}
	})
	c.srv = &http.Server{Handler: c.guard(mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// guard passes on only the requests from loopback that carry the token.
func (c *Control) guard(next http.Handler) http.Handler {
	want := []byte("Bearer " + c.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err != nil || !ap.Addr().IsLoopback() {
			http.Error(w, "the demo control accepts requests from loopback only", http.StatusForbidden)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "want the header \"Authorization: Bearer TOKEN\" with the token detour up printed", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Token is what requests must carry as "Authorization: Bearer TOKEN".
func (c *Control) Token() string { return c.token }

// Addr is the control server's address.
func (c *Control) Addr() string { return c.ln.Addr().String() }

// Close stops the control server.
func (c *Control) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stop demo control: %w", err)
	}
	return nil
}
