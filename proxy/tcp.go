package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
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
	connect := s.app.pol.timeouts.Connect.D()
	dialLocal, dialPeer := dialFrom(nil, connect), dialFrom(s.app.edge.source, connect)
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				wg.Wait()
				return nil
			}
			// Like net/http's Serve: whatever failed (out of descriptors, a connection reset
			// before it was accepted), wait a little and accept again; the edge keeps serving.
			s.app.log.Warn().Err(err).Dur("duration", backoff).Msg("accept failed")
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		release := s.app.admit(ctx.Done(), c)
		if release == nil {
			continue
		}
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
			release()
		})
	}
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// handle connects c to the first target that accepts, as the policy says, and copies both ways
// until both sides are done or the connection was idle for tcp_idle; track registers the
// upstream connection so stopping the edge closes it too.
func (s *tcpServer) handle(ctx context.Context, c net.Conn, dialLocal, dialPeer dialFunc, track func(net.Conn) func()) {
	defer func() { _ = c.Close() }()
	a := s.app
	defer func() {
		if v := recover(); v != nil {
			// As net/http and the front do, a panic ends the connection, not the edge. The
			// instance's connection was closed as the attempt unwound; the client's is reset,
			// as an aborted stream is passed on (see splice).
			stack := debug.Stack()
			if p, ok := v.(relayPanic); ok {
				v, stack = p.v, p.stack
			}
			_ = resetClose(c)
			a.log.Error().Interface("panic", v).Str("client", c.RemoteAddr().String()).Str("stack", string(stack)).
				Msg("connection panicked")
		}
	}()
	r := a.route.Load()
	err := a.forward(func() bool { return ctx.Err() != nil }, r, a.plan(r, a.edge.forwardedByEdge(c.RemoteAddr())), true, func() bool { return true },
		func(at *attempt) error {
			t := at.t
			dial := dialLocal
			if t.Secondary {
				dial = dialPeer
			}
			up, err := dial(ctx, "tcp", t.Addr)
			if err != nil {
				return err
			}
			defer track(up)()
			defer func() { _ = up.Close() }()
			spliceBoth(c, up, a.pol.timeouts.TCPIdle.D())
			return nil
		})
	if err != nil && ctx.Err() == nil {
		// Once per reason a while, as logFailure for requests: a client retrying in a loop
		// would write a line per connection.
		a.failures.Gate(a.log.Warn(), "tcp "+failureReason(err)).Str("client", c.RemoteAddr().String()).Err(err).
			Msg("connection refused: no target accepted it")
	}
}

// spliceBoth copies a to b and b to a until both directions ended, or until neither carried a
// byte for idle (when idle > 0), when both connections are closed.
func spliceBoth(a, b net.Conn, idle time.Duration) {
	var st spliceState
	st.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var panicked *relayPanic
	go func() {
		defer close(done)
		defer func() {
			if v := recover(); v != nil {
				// Both connections end, so that the other direction does too, and the panic
				// is raised again on the connection's own goroutine, which handles it.
				panicked = &relayPanic{v: v, stack: debug.Stack()}
				_ = resetClose(a)
				_ = resetClose(b)
			}
		}()
		splice(b, a, idle, &st, &st.toB, &st.toA)
	}()
	splice(a, b, idle, &st, &st.toA, &st.toB)
	<-done
	if panicked != nil {
		panic(*panicked)
	}
}

// relayPanic is a panic of spliceBoth's second goroutine, with that goroutine's stack.
type relayPanic struct {
	v     any
	stack []byte
}

// splice copies src to dst, then half-closes dst so the other side sees the end of the stream;
// a src that fails otherwise than by its end (a reset) has dst reset, and so does a dst whose
// write fails (its peer reset) have src reset. toDst is held through each write to dst and
// toSrc through the other direction's to src: a write to src may be told of src's reset in
// place of the read, which finds only src's end, so the read waits for that write before
// passing the end on.
// A read or a write that waits idle past the last byte either way ends both connections: a
// write waits when its reader takes nothing, and both directions may wait so at once (a
// client that sends without reading to an instance that echoes), with no read waiting.
func splice(dst, src net.Conn, idle time.Duration, st *spliceState, toDst, toSrc *sync.Mutex) {
	last := &st.last
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	for {
		if idle > 0 {
			dl := time.Unix(0, last.Load()).Add(idle)
			if st.writing.Load() > 0 {
				// The other direction is writing: its write sees the progress this read
				// cannot, and ends both connections itself once none was made for idle.
				dl = time.Now().Add(idle)
			}
			_ = src.SetReadDeadline(dl)
		}
		n, err := src.Read(*buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			st.writing.Add(1)
			werr := writeHeld(toDst, dst, (*buf)[:n], idle, st)
			st.writing.Add(-1)
			if werr != nil {
				if isTimeout(werr) {
					_ = src.Close()
					_ = dst.Close()
					return
				}
				// dst's peer reset (or the edge closed dst): src is reset, as a src that
				// fails has dst reset below.
				_ = dst.Close()
				_ = resetClose(src)
				return
			}
		}
		if err == nil {
			continue
		}
		if isTimeout(err) && (time.Since(time.Unix(0, last.Load())) < idle || st.writing.Load() > 0) {
			continue // the other direction carried bytes meanwhile
		}
		if isTimeout(err) {
			_ = src.Close()
			_ = dst.Close()
			return
		}
		if errors.Is(err, io.EOF) {
			// A write to src under way may have been told of src's reset in place of this
			// read, which then finds only its end: it is waited for.
			toSrc.Lock()
			toSrc.Unlock()
		}
		if !errors.Is(err, io.EOF) || st.aborted.Load() {
			// src was reset (or closed by the edge): dst is reset too, not half-closed, so its
			// peer never takes an aborted stream for a whole one, nor waits on a half-close
			// from a side that is gone while the edge holds both connections until tcp_idle.
			_ = src.Close()
			_ = resetClose(dst)
			return
		}
		break
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// spliceState is what the two directions of spliceBoth share: when a byte last went either
// way, and how many of them are writing (a write's progress is seen only when it returns).
type spliceState struct {
	last    atomic.Int64
	writing atomic.Int32
	// aborted is set once a write failed otherwise than by idle: a side reset.
	aborted atomic.Bool
	// toA and toB are held through each write to a and to b (splice).
	toA, toB sync.Mutex
}

// writeHeld writes p to dst holding held, released however the write ends (a panic too: the
// other direction's read may be waiting for it), and marks st aborted, before releasing held,
// when the write failed otherwise than by idle or panicked: the read that waited then resets
// its side rather than half-closing it before the panic's handler resets both.
func writeHeld(held *sync.Mutex, dst net.Conn, p []byte, idle time.Duration, st *spliceState) error {
	held.Lock()
	failed := true
	defer func() {
		if failed {
			st.aborted.Store(true)
		}
		held.Unlock()
	}()
	err := write(dst, p, idle, &st.last)
	failed = err != nil && !isTimeout(err)
	return err
}

// write writes p to dst; when idle > 0 it fails with a timeout once no byte went either way
// for idle.
func write(dst net.Conn, p []byte, idle time.Duration, last *atomic.Int64) error {
	for len(p) > 0 {
		if idle > 0 {
			_ = dst.SetWriteDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		n, err := dst.Write(p)
		p = p[n:]
		if n > 0 {
			last.Store(time.Now().UnixNano())
		}
		if err != nil && !(isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle) {
			return err
		}
	}
	return nil
}
