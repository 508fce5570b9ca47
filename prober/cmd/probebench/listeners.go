package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// loopback returns the i-th address of a /16 inside 127.0.0.0/8, skipping .0 and .255.
func loopback(second byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, second, byte(1 + i/254), byte(1 + i%254)})
}

// endpoints are the listeners the contenders check.
type endpoints struct {
	tcp, http []netip.AddrPort
	closers   []io.Closer
}

func (e *endpoints) Close() {
	for _, c := range e.closers {
		_ = c.Close()
	}
}

// listen opens nTCP listeners that accept and close, and nHTTP listeners that answer 200 "ok",
// each on its own loopback address.
func listen(nTCP, nHTTP int) (*endpoints, error) {
	e := &endpoints{}
	for i := range nTCP {
		ap := netip.AddrPortFrom(loopback(1, i), 9000)
		l, err := net.Listen("tcp", ap.String())
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("listen on %s: %w", ap, err)
		}
		e.tcp = append(e.tcp, ap)
		e.closers = append(e.closers, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Second}
	// One request per connection, whatever the client asks: idle connections would hold the
	// benchmark's file descriptors.
	srv.SetKeepAlivesEnabled(false)
	for i := range nHTTP {
		ap := netip.AddrPortFrom(loopback(2, i), 8080)
		l, err := net.Listen("tcp", ap.String())
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("listen on %s: %w", ap, err)
		}
		e.http = append(e.http, ap)
		go func() { _ = srv.Serve(l) }()
	}
	e.closers = append(e.closers, srv)
	return e, nil
}
