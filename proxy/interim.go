package proxy

import (
	"net/http"
	"net/textproto"
)

// An instance's interim answers (1xx but 101, which is final: 103 Early Hints, a 100 Continue
// sent unasked, 102 Processing) reach the client before the final answer on every path, as
// httputil.ReverseProxy relays them, with two differences: their hop-by-hop fields are removed
// (RFC 9110 §7.6.1), as a final answer's are, and an HTTP/1.0 client gets none (RFC 9110 §15.2:
// a server must not send one to it; net/http's server would, with an HTTP/1.0 status line).
// Each interim head, like the final one, may take maxResponseHead: the limit starts over after
// each, as http.Transport's does when its caller takes the interim answers; the final answer
// must still come within response_header.

// noBodyFields are the fields net/http's server leaves out of an interim answer's head.
var noBodyFields = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

// relayInterim writes the interim answer code with header h to w, the writer of the answer to
// r, as ReverseProxy does: net/http's server writes it at once, its fields sorted. w's header
// is empty until the final answer, so it holds h alone and is emptied again after.
func relayInterim(w http.ResponseWriter, r *http.Request, code int, h http.Header) {
	if !r.ProtoAtLeast(1, 1) {
		return
	}
	removeHop(h)
	dst := w.Header()
	for k, vs := range h {
		dst[k] = vs
	}
	w.WriteHeader(code)
	clear(dst)
}

// dropHopInterim removes the hop-by-hop fields of an interim answer on the ReverseProxy path,
// before ReverseProxy relays it (an http.Transport's httptrace.ClientTrace.Got1xxResponse).
func dropHopInterim(_ int, h textproto.MIMEHeader) error {
	removeHop(http.Header(h))
	return nil
}

// http10Writer is the writer of the answer to an HTTP/1.0 request on the ReverseProxy path: it
// drops the interim answers ReverseProxy relays.
type http10Writer struct{ http.ResponseWriter }

func (w http10Writer) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w http10Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// interim writes an interim answer to the lean path's client, an HTTP/1.1 one, as relayInterim
// has net/http's server write it. From the first one on, the client is watched until the final
// answer's head arrives (lc.up's), which may take response_header: a client that leaves
// meanwhile ends the wait, as net/http's server cancels the request of a client gone.
func (lc *leanConn) interim(code int, h http.Header) {
	removeHop(h)
	lc.statusLine(code)
	_ = h.WriteSubset(lc.bw, noBodyFields)
	_, _ = lc.bw.WriteString("\r\n")
	_ = lc.bw.Flush()
	if lc.unwatch == nil {
		lc.unwatch = lc.watch(lc.up)
	}
}
