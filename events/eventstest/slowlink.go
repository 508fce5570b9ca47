package eventstest

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SlowLink relays connections on loopback to a NATS server, holding what it reads from either
// end for that direction's delay before passing it on: a distant server, or a loaded machine
// that answers late. The delays may change while connections are open; each chunk keeps the
// delay in force when it was read.
type SlowLink struct {
	// URL is the link's own address, for clients to connect to instead of the server's.
	URL string
	// up and down are the delays, in nanoseconds, towards the server and back.
	up, down atomic.Int64
	// cut is set while the link is severed.
	cut   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

// NewSlowLink starts a link to the NATS server at url, without delay until Delay sets one. It
// and its connections close when the test ends.
func NewSlowLink(tb testing.TB, url string) *SlowLink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &SlowLink{URL: "nats://" + ln.Addr().String()}
	tb.Cleanup(func() {
		_ = ln.Close()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.conns {
			_ = c.Close()
		}
	})
	addr := strings.TrimPrefix(url, "nats://")
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if l.cut.Load() {
				_ = in.Close()
				continue
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				_ = in.Close()
				continue
			}
			l.mu.Lock()
			l.conns = append(l.conns, in, out)
			l.mu.Unlock()
			go relay(out, in, &l.up)
			go relay(in, out, &l.down)
		}
	}()
	return l
}

// Delay sets the delay of what the link carries towards the server (up) and back (down).
func (l *SlowLink) Delay(up, down time.Duration) {
	l.up.Store(int64(up))
	l.down.Store(int64(down))
}

// Sever cuts the link's clients off from the server until Mend, as a network partition does:
// it closes every connection and refuses new ones.
func (l *SlowLink) Sever() {
	l.cut.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// Mend lets the link's clients connect again after Sever.
func (l *SlowLink) Mend() { l.cut.Store(false) }

// relay copies src to dst, each chunk the delay after it was read, until either end closes.
func relay(dst io.WriteCloser, src io.ReadCloser, delay *atomic.Int64) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	chunks := make(chan chunk, 1<<16)
	go func() {
		defer close(chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				chunks <- chunk{b[:n], time.Now().Add(time.Duration(delay.Load()))}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { _ = dst.Close(); _ = src.Close() }()
	for c := range chunks {
		time.Sleep(time.Until(c.at)) // the link's latency, not a wait for another goroutine
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
