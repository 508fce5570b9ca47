package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// errClientBodyTimeout is the failure of a request whose client sent nothing of its body for
// client_body. The client is answered 408 Request Timeout (see fail).
var errClientBodyTimeout = errors.New("no byte of the request body arrived within the client_body timeout")

// timedBody is a request body each read of which must progress within d, client_body: the
// edge waits that long between two reads of a body, as nginx's client_body_timeout, not for
// the whole body. A read that waits longer is ended through ctl, with the connection's read
// deadline (HTTP/1.1) or the stream's (HTTP/2), and returns errClientBodyTimeout: the
// transport then closes its connection upstream, mid-body, never pooling it.
type timedBody struct {
	rc  io.ReadCloser
	ctl *http.ResponseController
	d   time.Duration
	h2  bool
	// expired is set before the read is ended, so that whatever fails first, the read or the
	// request's context (which net/http's HTTP/1.1 server cancels on a read error), the
	// failure is known as the client's.
	expired atomic.Bool
	mu      sync.Mutex
	t       *time.Timer
	since   time.Time // when the read under way started; zero between reads
	done    bool      // the handler returned
}

func newTimedBody(rc io.ReadCloser, w http.ResponseWriter, r *http.Request, d time.Duration) *timedBody {
	return &timedBody{rc: rc, ctl: http.NewResponseController(w), d: d, h2: r.ProtoMajor == 2}
}

func (b *timedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	b.since = time.Now()
	if b.t == nil {
		b.t = time.AfterFunc(b.d, b.expire)
	} else {
		b.t.Reset(b.d)
	}
	b.mu.Unlock()
	n, err := b.rc.Read(p)
	b.mu.Lock()
	b.since = time.Time{}
	if b.done {
		// A read that outlived its request: nothing waits for another.
		b.t.Stop()
	}
	b.mu.Unlock()
	if err != nil && b.expired.Load() {
		err = errClientBodyTimeout
	}
	return n, err
}

// expire ends the read under way when it has waited d. The timer is not stopped between
// reads, so it may fire with no read under way, or for one that started later, whose own
// wait it then resumes.
func (b *timedBody) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.since.IsZero() || b.h2 && b.done {
		return
	}
	if left := b.d - time.Since(b.since); left > 0 {
		b.t.Reset(left)
		return
	}
	b.expired.Store(true)
	_ = b.ctl.SetReadDeadline(time.Unix(1, 0))
}

func (b *timedBody) Close() error { return b.rc.Close() }

// end is called when the handler returns, and stops the timer: pending, it would hold the
// request and its writer for up to client_body after it ended. An HTTP/2 stream's controller
// may not be used after that; the server resets a stream whose body is still open, which ends
// a read under way. An HTTP/1.1 read may still be under way (the transport sends the body
// while the answer is relayed, and may be still at it), and net/http waits for it before the
// next request on the connection: the timer goes on bounding its wait, and the read stops it.
func (b *timedBody) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	if b.t != nil && (b.h2 || b.since.IsZero()) {
		b.t.Stop()
	}
}

// newSizedBody returns body, an HTTP/1.1 request body of the declared length n, ending once
// that length was read without reading the client's body again. The transport, having sent the
// declared bytes, reads the body once more to check it holds no more (net/http's server never gives
// more); and net/http's server, once the answer starts, closes a body read to its end. That
// last read, when it came after the instance's answer had started (a busy edge, a CI run),
// failed ("http: invalid Read on closed Body"), and the transport closed the connection to the
// instance, cutting an answer the client was being sent.
func newSizedBody(body io.ReadCloser, n int64) io.ReadCloser {
	return &sizedBody{LimitedReader: io.LimitedReader{R: body, N: n}, Closer: body}
}

// sizedBody is a body that io.LimitedReader ends at its declared length (newSizedBody).
type sizedBody struct {
	io.LimitedReader
	io.Closer
}

// duplex serves an HTTP/1 request with a body, body, full duplex: the answer's head goes to the
// client as soon as it arrives, while the body is still forwarded. net/http's server otherwise
// holds an answer's head back until it has read what is left of the body (up to 256 KiB), so
// that an instance answering early, to a client that sends the rest of its body only once that
// answer came (a bidirectional stream), waited with it until client_body. Without that read,
// net/http keeps the connection after a body it did not read to its end, or whose chunked
// framing was malformed, and would read what follows, the rest of that body, as the next
// request (unchecked by guardedConn, which stops following a body net/http refuses): so a final
// answer whose head leaves before the body ended cleanly carries Connection: close, and net/http
// closes the connection after it. A body read to its end keeps it, as net/http would.
func duplex(w http.ResponseWriter, body io.ReadCloser) *duplexWriter {
	_ = http.NewResponseController(w).EnableFullDuplex()
	return &duplexWriter{ResponseWriter: w, body: &endedBody{ReadCloser: body}}
}

// endedBody is a request body that records its end: a read that returned io.EOF, which
// net/http's server returns only once the body's framing ended well (its declared length, or
// the last chunk and trailers, when sizedBody does not end it at its length first).
type endedBody struct {
	io.ReadCloser
	ended atomic.Bool
}

func (b *endedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ended.Store(true)
	}
	return n, err
}

// duplexWriter writes the answer to a request served full duplex (see duplex).
type duplexWriter struct {
	http.ResponseWriter
	body  *endedBody
	wrote bool
	// cut is set when the answer's head left before the body ended: the connection ends after it.
	cut bool
}

func (w *duplexWriter) WriteHeader(code int) {
	if code >= http.StatusOK && !w.wrote {
		w.wrote = true
		if !w.body.ended.Load() {
			w.cut = true
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *duplexWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *duplexWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// end is called when the handler returns. After an answer that cut the connection, net/http's
// server reads what is left of the body, up to 256 KiB, before it closes the connection (so
// that the client, still sending, gets the answer rather than a reset), with no deadline: that
// read is ended after d, client_body, as a body's read is, or a client that sends nothing more
// would hold the connection for as long as it liked. net/http clears the connection's deadline
// as the handler returns while the transport still reads the body, so the read is ended from a
// timer; the connection is not reused, so a late one ends nothing else.
func (w *duplexWriter) end(d time.Duration) {
	if !w.cut || d <= 0 {
		return
	}
	rc := http.NewResponseController(w.ResponseWriter)
	time.AfterFunc(d, func() { _ = rc.SetReadDeadline(time.Unix(1, 0)) })
}
