package proxy

import (
	"fmt"
	"io"
	"net/http"
	"slices"

	"golang.org/x/net/http/httpguts"
)

// An instance's trailers reach the client, on every path, only when their names are tokens and
// allowed in a trailer: net/http's server sends none of the fields httpguts.ValidTrailerHeader
// refuses (framing, routing, authentication, controls and content processing, RFC 9110 §6.5.1),
// and the edge drops them too when nobody announced them, which httputil.ReverseProxy relays as
// they came; it drops the hop-by-hop fields, those the answer's Connection names, and
// Set-Cookie, which §6.5.1 names among the fields a trailer may not carry. Only the trailers
// relayed are announced in the head's Trailer field.

// maxTrailerBytes is the longest trailer section the edge relays, counted as it writes it: a
// "Name: value\r\n" line per value and the empty line. httputil.ReverseProxy's client sees a
// section longer than its Transport's default 4 KiB read buffer, as it arrived, cut; every path
// of the edge reads answers through upstreamReadBuffer, 8 KiB.
const maxTrailerBytes = 4 << 10

// errTrailerTooLong is the failure of an answer whose trailer section is longer than
// maxTrailerBytes: its client sees it break off, as ReverseProxy's client does.
var errTrailerTooLong = fmt.Errorf("the answer's trailer section is longer than %d bytes", maxTrailerBytes)

// relaysTrailer reports whether the trailer field named k (canonical) of an answer whose
// Connection field names listed reaches the client.
func relaysTrailer(k string, listed map[string]bool) bool {
	return httpguts.ValidHeaderFieldName(k) && httpguts.ValidTrailerHeader(k) &&
		!slices.Contains(hopByHop, k) && k != "Set-Cookie" && !listed[k]
}

// dropTrailers deletes from t the fields relaysTrailer refuses. Called on resp.Trailer once the
// head is read, it leaves the trailers the edge announces.
func dropTrailers(t http.Header, listed map[string]bool) {
	for k := range t {
		if !relaysTrailer(k, listed) {
			delete(t, k)
		}
	}
}

// endTrailer checks the trailer section t that arrived after an answer's body and drops from it
// the fields the edge does not relay; its length counts them all.
func endTrailer(t http.Header, listed map[string]bool) error {
	n := len("\r\n")
	for k, vs := range t {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	if n > maxTrailerBytes {
		return errTrailerTooLong
	}
	dropTrailers(t, listed)
	return nil
}

// trailerBody is the body of a chunked answer on the ReverseProxy path: when it ends, the
// trailers the transport read into resp.Trailer are checked by endTrailer, before ReverseProxy
// relays them.
type trailerBody struct {
	io.ReadCloser
	resp   *http.Response
	listed map[string]bool
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		if terr := endTrailer(b.resp.Trailer, b.listed); terr != nil {
			err = terr
		}
	}
	return n, err
}

// watchTrailer makes the trailers of res, an answer on the ReverseProxy path, follow the edge's
// rule: the ones announced at once, also by an answer without a body (to a HEAD, a 304), the
// ones that arrive when its chunked body ends.
func watchTrailer(res *http.Response) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	listed := connectionListed(res.Header)
	dropTrailers(res.Trailer, listed)
	if res.ContentLength != -1 || len(res.TransferEncoding) == 0 {
		return
	}
	res.Body = &trailerBody{ReadCloser: res.Body, resp: res, listed: listed}
}
