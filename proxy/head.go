package proxy

import "bytes"

// The lean path serves plain HTTP/1.1 GET requests, the bulk of most traffic, without net/http's
// server: parseHead decides from the request head alone whether a request is one of them. Any
// other request, malformed ones included, goes to net/http, which answers a malformed one 400.

// maxLeanHead is the largest request head the lean path parses; a longer one goes to net/http.
const maxLeanHead = 8 << 10

// reqHead is the head of a request the lean path serves. Its slices point into the buffer the
// head was parsed from.
type reqHead struct {
	target, host []byte
	// fields are the header fields in order of arrival, Host included.
	fields []field
	// connection holds the values of the Connection fields, which name hop-by-hop fields.
	connection [][]byte
	// close is set when the client asked to close the connection after the answer.
	close bool
	// trailers is set when the client accepts trailers (TE: trailers).
	trailers bool
	// ping is set for an edge's ping (a GET or HEAD with HeaderPing), which the front answers
	// itself.
	ping bool
}

// field is one header field with the surrounding whitespace of its value trimmed.
type field struct{ name, value []byte }

// headEnd returns the length of the request head at the start of b, up to and including the
// empty line that ends it; 0 when b holds no complete head yet; -1 when a line of b ends in a
// bare LF, which the lean path leaves to net/http.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		j += i
		if j == 0 || b[j-1] != '\r' {
			return -1
		}
		if j >= 3 && b[j-2] == '\n' && b[j-3] == '\r' {
			return j + 1
		}
		i = j + 1
	}
}

// parseHead parses b, a complete request head as measured by headEnd, into h and reports whether
// the lean path serves the request: an HTTP/1.1 GET of a path, with a single valid Host, no
// body, no upgrade, no expectation and not forwarded by another edge, whose bytes net/http would
// accept and forward unchanged; or such a GET or HEAD that is a ping (every HeaderPing field
// with a value: net/http's handler takes an empty one for none), which sets h.ping.
func parseHead(b []byte, h *reqHead) bool {
	*h = reqHead{fields: h.fields[:0], connection: h.connection[:0]}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return false
	}
	target, ok := bytes.CutPrefix(line, []byte("GET "))
	head := false
	if !ok {
		if target, head = bytes.CutPrefix(line, []byte("HEAD ")); !head {
			return false
		}
	}
	if target, ok = bytes.CutSuffix(target, []byte(" HTTP/1.1")); !ok || !leanTarget(target) {
		return false
	}
	h.target = target
	for {
		var name, value []byte
		var end bool
		if name, value, rest, end, ok = nextField(rest); !ok {
			return false
		}
		if end {
			break
		}
		switch {
		case fold(name, "Host"):
			if h.host != nil || !leanHost(value) {
				return false
			}
			h.host = value
		case fold(name, "Connection"):
			for t := range bytes.SplitSeq(value, []byte(",")) {
				t = bytes.Trim(t, " \t")
				if fold(t, "upgrade") {
					return false
				}
				h.close = h.close || fold(t, "close")
			}
			h.connection = append(h.connection, value)
		case fold(name, "Te"):
			h.trailers = h.trailers || listsToken(value, "trailers")
		case fold(name, "Content-Length"), fold(name, "Transfer-Encoding"), fold(name, "Expect"),
			fold(name, "Upgrade"), fold(name, "Http2-Settings"), fold(name, HeaderForwardedBy):
			return false
		case fold(name, HeaderPing):
			if len(value) == 0 {
				return false
			}
			h.ping = true
		}
		h.fields = append(h.fields, field{name: name, value: value})
	}
	return len(rest) == 0 && h.host != nil && (h.ping || !head)
}

// nextField reads one header line from b: a field's name and trimmed value, or end at the blank
// line that closes the head. ok is false for a line without CRLF, a name that is not a token or
// a value with characters a field may not hold.
func nextField(b []byte) (name, value, rest []byte, end, ok bool) {
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return nil, nil, nil, false, false
	}
	if len(line) == 0 {
		return nil, nil, rest, true, true
	}
	name, value, ok = bytes.Cut(line, []byte(":"))
	if !ok || !isToken(name) {
		return nil, nil, nil, false, false
	}
	value = bytes.Trim(value, " \t")
	if !validValue(value) {
		return nil, nil, nil, false, false
	}
	return name, value, rest, false, true
}

// leanTarget reports whether t is a path, with an optional query, that net/http forwards as it
// came: only characters a path may hold unescaped, well-formed escapes, and printable ASCII
// without '#' in the query.
func leanTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' || len(t) > 1 && t[1] == '/' {
		return false
	}
	path, query, _ := bytes.Cut(t, []byte("?"))
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return false
			}
			i += 2
		case isAlnum(c) || bytes.IndexByte([]byte("-._~!$&'()*+,;=:@/"), c) >= 0:
		default:
			return false
		}
	}
	for _, c := range query {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// leanHost reports whether v is a non-empty host[:port] of letters, digits and "-._:[]".
func leanHost(v []byte) bool {
	for _, c := range v {
		if !isAlnum(c) && bytes.IndexByte([]byte("-._:[]"), c) < 0 {
			return false
		}
	}
	return len(v) > 0
}

// validValue reports whether v holds no control character other than tab.
func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	for _, c := range b {
		if !isAlnum(c) && bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) < 0 {
			return false
		}
	}
	return len(b) > 0
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// fold reports whether b equals s, ignoring ASCII case.
func fold[S string | []byte](b []byte, s S) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// listsToken reports whether the comma-separated list v names token, ASCII case-insensitively,
// with optional whitespace around each element, as net/http's ReverseProxy reads a TE field
// (httpguts.HeaderValuesContainsToken): an element that holds the token ("x-no-trailers") or
// gives it a parameter ("trailers;q=0.5", which RFC 9110 §10.1.4 allows no trailers) does not.
func listsToken(v []byte, token string) bool {
	for t := range bytes.SplitSeq(v, []byte(",")) {
		if fold(bytes.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// listed reports whether a Connection field of the request names the field name.
func (h *reqHead) listed(name []byte) bool {
	for _, v := range h.connection {
		for t := range bytes.SplitSeq(v, []byte(",")) {
			if fold(bytes.Trim(t, " \t"), name) {
				return true
			}
		}
	}
	return false
}

// appendCanonical appends name in canonical form: the first letter and each letter after a
// hyphen upper case, the others lower case.
func appendCanonical(dst, name []byte) []byte {
	upper := true
	for _, c := range name {
		switch {
		case upper && c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case !upper && c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// respHead is the head of an answer the lean path relays without net/http's parser. Its slices
// point into the buffer the head was parsed from.
type respHead struct {
	code   int
	fields []field
	// length is the body's Content-Length.
	length int64
	// hasDate is set when the answer carries a Date field.
	hasDate bool
}

// parseRespHead parses b, a complete response head as measured by headEnd, into h and reports
// whether the lean path relays the answer as it is: a final HTTP/1.1 answer whose status allows
// a body, with valid fields, a single Content-Length, nothing for net/http to sniff (a
// Content-Type, a Content-Encoding or an empty body) and no hop-by-hop or Trailer field. The
// others are read with net/http's parser.
func parseRespHead(b []byte, h *respHead) bool {
	*h = respHead{fields: h.fields[:0], length: -1}
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return false
	}
	status, ok := bytes.CutPrefix(line, []byte("HTTP/1.1 "))
	if !ok || len(status) < 3 || len(status) > 3 && status[3] != ' ' {
		return false
	}
	for _, c := range status[:3] {
		if c < '0' || c > '9' {
			return false
		}
		h.code = h.code*10 + int(c-'0')
	}
	if h.code < 200 || !bodyAllowed(h.code) {
		return false
	}
	typed := false
	for {
		var name, value []byte
		var end bool
		if name, value, rest, end, ok = nextField(rest); !ok {
			return false
		}
		if end {
			break
		}
		switch {
		case fold(name, "Content-Length"):
			if h.length >= 0 || len(value) == 0 || len(value) > 18 {
				return false
			}
			h.length = 0
			for _, c := range value {
				if c < '0' || c > '9' {
					return false
				}
				h.length = h.length*10 + int64(c-'0')
			}
		case fold(name, "Content-Type"):
			typed = true
		case fold(name, "Content-Encoding"):
			typed = typed || len(value) > 0
		case fold(name, "Date"):
			h.hasDate = true
		case isHopByHop(name):
			return false
		}
		h.fields = append(h.fields, field{name: name, value: value})
	}
	return len(rest) == 0 && h.length >= 0 && (typed || h.length == 0)
}
