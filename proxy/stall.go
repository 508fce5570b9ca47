package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/detourdev/detour/proxy/route"
)

// An instance that sends an answer's head and part of its body, then nothing, would hold the
// edge, its connection to the instance and the client for as long as the client waits:
// response_body bounds the wait between two reads of an answer's body on every path, as nginx's
// proxy_read_timeout does. The lean and fast paths time the reads of their connection in its
// headLimit, the ReverseProxy path in its watchedConn while a stallBody is read. An answer cut
// so has started, so no status can tell the client: net/http's server, on the fast and
// ReverseProxy paths, closes an HTTP/1 client's connection or resets an HTTP/2 stream
// (http.ErrAbortHandler), and the lean path closes the connection, a chunked answer without
// its last chunk.

// errResponseBodyTimeout is the failure of an answer whose instance sent nothing of its body for
// response_body.
var errResponseBodyTimeout = errors.New("no byte of the answer's body arrived within the response_body timeout")

// stallTimer bounds each read of an answer's body on c by d. A read that waits longer is ended
// by cut, which puts c's read deadline in the past (the connection is then never reused), and
// fails with errResponseBodyTimeout. A deadline set per read would undo the one in the past
// that a client's leaving sets on the fast path; the timer only ever ends reads. A read that
// returns as the timer fires was not cut, but the reads after it would be: uncut, when set,
// has the deadline put back then, before the bytes read reach whoever may keep the connection
// for another request (the ReverseProxy path's transport, on the answer's end); unset, the
// next read fails, and the lean and fast paths, whose pool takes no connection whose deadline
// has passed (quiet), lose the connection at most.
// It is not stopped between reads: it fires at most once after the last one, and is rearmed by
// the next. Once the body is relayed it is stopped (upConn.bodyRead, stallBody.release), so that
// it does not hold the connection until it fires.
type stallTimer struct {
	d     time.Duration
	c     net.Conn
	uncut bool
	mu    sync.Mutex
	t     *time.Timer
	// armed is set while t is pending.
	armed bool
	// since is when the read under way started; zero between reads.
	since time.Time
	// expired is set once cut ended a read.
	expired bool
}

// begin starts a read.
func (s *stallTimer) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since = time.Now()
	if s.armed {
		return
	}
	s.armed = true
	if s.t == nil {
		s.t = time.AfterFunc(s.d, s.expire)
	} else {
		s.t.Reset(s.d)
	}
}

// end ends the read begun last, which returned err, and returns its error:
// errResponseBodyTimeout when the timer ended it, the read failing for the deadline cut put in
// the past. A read that returned the answer's last bytes or its end as the timer fired was
// not cut: the answer came whole.
func (s *stallTimer) end(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since = time.Time{}
	switch {
	case !s.expired:
	case isTimeout(err):
		return errResponseBodyTimeout
	case s.uncut:
		_ = s.c.SetReadDeadline(time.Time{})
		s.expired = false
	}
	return err
}

// recut ends the read under way again when the timer ended it already: for a caller that
// moved the connection's read deadline since.
func (s *stallTimer) recut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired {
		s.cut()
	}
}

// reset readies the timer for another answer's body.
func (s *stallTimer) reset() {
	s.mu.Lock()
	s.expired = false
	s.mu.Unlock()
}

// stop stops the timer.
func (s *stallTimer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		s.t.Stop()
	}
	s.armed = false
}

// expire ends the read under way when it has waited d, and otherwise waits for the rest of it.
func (s *stallTimer) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since.IsZero() || !s.armed {
		s.armed = false
		return
	}
	if left := s.d - time.Since(s.since); left > 0 {
		s.t.Reset(left)
		return
	}
	s.armed = false
	s.expired = true
	s.cut()
}

// cut ends the reads of the connection under way and to come.
func (s *stallTimer) cut() { _ = s.c.SetReadDeadline(time.Unix(1, 0)) }

// stallBody is the body of an answer from t on a's ReverseProxy path, each read of which is
// bounded by response_body: until the body ends, its connection wc times its reads (the
// transport's, which keeps the connection once it read the body's end, before the body returns
// it), and on expiry they fail, and the transport closes it.
type stallBody struct {
	io.ReadCloser
	wc *watchedConn
	s  stallTimer
	a  *app
	t  route.Target
}

// newStallBody bounds each read of body, an answer's from t on a's ReverseProxy path arriving
// on wc, by d.
func newStallBody(body io.ReadCloser, wc *watchedConn, d time.Duration, a *app, t route.Target) *stallBody {
	b := &stallBody{ReadCloser: body, wc: wc, a: a, t: t}
	b.s = stallTimer{d: d, c: wc, uncut: true}
	wc.timeReads(&b.s)
	return b
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
		b.a.noteBodyTimeout(b.t, err)
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.release()
	return b.ReadCloser.Close()
}

// release ends the timing of the connection's reads once the body ended: the transport may
// already be waiting on it for the next answer.
func (b *stallBody) release() {
	b.wc.stopTiming(&b.s)
	b.s.stop()
}

// noteBodyTimeout logs and counts an answer from t whose body broke off with err, when
// response_body cut it: at most one line per 10 s (failureLogWindow), with the count of those
// held back.
func (a *app) noteBodyTimeout(t route.Target, err error) {
	if !errors.Is(err, errResponseBodyTimeout) {
		return
	}
	a.metrics.bodyTimedOut()
	ev := a.failures.Gate(a.log.Warn(), timeoutResponseBody).Str("instance", t.Addr)
	if t.Secondary {
		ev = ev.Bool("secondary", true)
	} else {
		ev = ev.Str("endpoint", t.Endpoint)
	}
	ev.Str("timeout", timeoutResponseBody).Dur("duration", a.pol.timeouts.ResponseBody.D()).
		Msg("answer cut: the instance stopped sending its body")
}

// timeoutResponseBody names the response_body timeout in logs and metrics.
const timeoutResponseBody = "response_body"
