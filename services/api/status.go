package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

//go:embed status.html
var statusPage []byte

// handlePage serves the status page: one self-contained HTML document.
func (s *Server) handlePage(w http.ResponseWriter, _ *http.Request, _ Token) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(statusPage)
}

// handleEvents streams the status as server-sent events: one "status" event at once and one
// after every change, each the whole snapshot, so a page that missed some needs nothing more.
// Each event, and each keepalive, has writeTimeout of its own to be written: the stream lives
// for hours, and a page that stops reading is cut off all the same. It ends once its token is
// gone from the tokens file (followTokens wakes it): one opened with a token found leaked went
// on showing the status after the token was revoked, for as long as its connection held.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, tok Token) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	wake := make(chan struct{}, 1)
	s.watchMu.Lock()
	s.watch[wake] = struct{}{}
	s.watchMu.Unlock()
	defer func() {
		s.watchMu.Lock()
		delete(s.watch, wake)
		s.watchMu.Unlock()
	}()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	write := func(b []byte) bool {
		if tok != loopbackToken && !s.tokens.Load().holds(tok) {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
		_, err := w.Write(b)
		return err == nil && rc.Flush() == nil
	}
	send := func() bool {
		b, err := json.Marshal(s.status())
		return err == nil && write(append(append([]byte("event: status\ndata: "), b...), "\n\n"...))
	}
	if !send() {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wake:
			if !send() {
				return
			}
		case <-keepalive.C:
			if !write([]byte(": keepalive\n\n")) {
				return
			}
		}
	}
}

// notConnected is Status.Stale while the API's connection to NATS is down, unread until it has
// read STATE to its end, and unreadSinceLoss once the connection is back until it has again.
const (
	notConnected    = "the API is not connected to NATS: this is what it knew when it lost the connection"
	unread          = "the API has not read STATE to its end yet (it is starting, or JetStream does not answer): states shown may be old or unknown"
	unreadSinceLoss = "the API reconnected to NATS and has not read what STATE stored meanwhile yet (it is reading, or JetStream does not answer): states shown may be old"
)

// status is the page's snapshot, saying whether it may be old. Whether STATE was read is taken
// before the snapshot: taken after, it could be read by then, and the snapshot not hold it all.
func (s *Server) status() Status {
	s.catchMu.Lock()
	readAt := s.readAt
	s.catchMu.Unlock()
	s.mu.RLock()
	st := s.m.status(20)
	s.mu.RUnlock()
	switch nc := s.o.JS.Conn(); {
	case nc != nil && !nc.IsConnected():
		st.Stale = notConnected
	case readAt < 0:
		st.Stale = unread
	case uint64(readAt) < s.reconnects():
		st.Stale = unreadSinceLoss
	}
	return st
}

// watchConnection wakes the status streams whenever the connection to NATS is lost or back,
// and has STATE read to its end again once it is back (resume), until ctx ends: without it, the
// page went on showing its last view as live.
func (s *Server) watchConnection(ctx context.Context, nc *nats.Conn) {
	ch := nc.StatusChanged()
	defer nc.RemoveStatusListener(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case status, open := <-ch:
			if !open {
				return
			}
			if status == nats.CONNECTED {
				go s.resume(ctx, nc.Stats().Reconnects)
			}
			s.changed()
		}
	}
}
