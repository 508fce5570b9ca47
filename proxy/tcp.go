package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// tcpServer is an L4 listener: every accepted connection is spliced to the first target of its
// plan that accepts a connection. A connection from another configured edge is never sent to a
// secondary, so two edges whose pools are both down do not pass it back and forth.
type tcpServer struct {
	app *app
	ln  net.Listener
}

func (s *tcpServer) serve(ctx context.Context) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		_ = s.ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	dialLocal, dialPeer := dialFrom(nil), dialFrom(s.app.edge.source)
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of descriptors or a transient failure: wait a little and accept again.
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			wg.Wait()
			return fmt.Errorf("serve app %s on %s: %w", s.app.name, s.ln.Addr(), err)
		}
		backoff = 5 * time.Millisecond
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Go(func() {
			s.handle(ctx, c, dialLocal, dialPeer, func(up net.Conn) func() {
				mu.Lock()
				conns[up] = true
				mu.Unlock()
				return func() {
					mu.Lock()
					delete(conns, up)
					mu.Unlock()
				}
			})
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// handle connects c to the first target that accepts and copies both ways until both sides
// are done; track registers the upstream connection so stopping the edge closes it too.
func (s *tcpServer) handle(ctx context.Context, c net.Conn, dialLocal, dialPeer dialFunc, track func(net.Conn) func()) {
	defer func() { _ = c.Close() }()
	a := s.app
	r := a.route.Load()
	var up net.Conn
	var err error
	for _, t := range a.plan(r, a.edge.forwardedByEdge(c.RemoteAddr())) {
		dial := dialLocal
		if t.Secondary {
			dial = dialPeer
		}
		if up, err = dial(ctx, "tcp", t.Addr); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		a.failed(r, t, err)
	}
	if up == nil {
		if err == nil {
			err = errNoTarget
		}
		a.log.Warn().Str("client", c.RemoteAddr().String()).Err(err).Msg("connection refused: no target accepted it")
		return
	}
	defer track(up)()
	defer func() { _ = up.Close() }()
	done := make(chan struct{})
	go func() {
		splice(up, c)
		close(done)
	}()
	splice(c, up)
	<-done
}

// splice copies src to dst, then half-closes dst so the other side sees the end of the stream.
func splice(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}
