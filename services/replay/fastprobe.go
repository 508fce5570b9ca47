package replay

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/detourdev/detour/events"
)

// decodeProbeFast decodes a single-result PROBES message of the shape events.Encode writes
// (every string without escapes, every key one of ProbeResult's, no null), which is what probers
// publish, about ten times faster than encoding/json. It reports false for anything else, and the
// caller falls back to DecodeProbes: whenever it accepts a message, its result is the one
// encoding/json gives (a differential test and a fuzzer hold it to that).
func decodeProbeFast(data []byte) (events.ProbeResult, bool) {
	s := scanner{b: data}
	var r events.ProbeResult
	var typ, id string
	var at time.Time
	sawData := false
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			return s.str(&typ)
		case "id":
			return s.str(&id)
		case "time":
			return s.time(&at)
		case "source", "cause":
			_, ok := s.raw()
			return ok
		case "data":
			sawData = true
			r = events.ProbeResult{}
			return s.object(func(key []byte) bool { return s.probeField(&r, key) })
		}
		return false
	})
	if !ok || s.skipSpace() != len(data) || typ != events.TypeProbeCompleted || id == "" || at.IsZero() || !sawData {
		return events.ProbeResult{}, false
	}
	if r.ID == "" {
		r.ID = id
	}
	return r, true
}

// scanner reads the few JSON forms decodeProbeFast accepts; each method reports false on any
// other, and the message is then decoded by encoding/json.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() int {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
	return s.i
}

func (s *scanner) byte(c byte) bool {
	if s.skipSpace() < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object reads {"key": value, …}, calling field to read each value.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.byte('{') {
		return false
	}
	if s.byte('}') {
		return true
	}
	for {
		key, ok := s.raw()
		if !ok || !s.byte(':') || !field(key) {
			return false
		}
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// raw reads a string without escapes or control characters, in valid UTF-8 only (encoding/json
// replaces invalid bytes, which the fast path leaves to it), and returns its bytes.
func (s *scanner) raw() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// str reads a string as raw does.
func (s *scanner) str(out *string) bool {
	v, ok := s.raw()
	if ok {
		*out = string(v)
	}
	return ok
}

func (s *scanner) time(out *time.Time) bool {
	start := s.skipSpace()
	if _, ok := s.raw(); !ok {
		return false
	}
	var t time.Time
	if t.UnmarshalJSON(s.b[start:s.i]) != nil {
		return false
	}
	*out = t
	return true
}

func (s *scanner) boolean(out *bool) bool {
	s.skipSpace()
	switch {
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		*out, s.i = true, s.i+4
		return true
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		*out, s.i = false, s.i+5
		return true
	}
	return false
}

// number reads a JSON number (RFC 8259 grammar) and returns its text.
func (s *scanner) number() (string, bool) {
	start := s.skipSpace()
	i := start
	digits := func() bool {
		n := i
		for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(s.b) && s.b[i] == '-' {
		i++
	}
	if i < len(s.b) && s.b[i] == '0' {
		i++
	} else if !digits() {
		return "", false
	}
	if i < len(s.b) && s.b[i] == '.' {
		i++
		if !digits() {
			return "", false
		}
	}
	if i < len(s.b) && (s.b[i] == 'e' || s.b[i] == 'E') {
		i++
		if i < len(s.b) && (s.b[i] == '+' || s.b[i] == '-') {
			i++
		}
		if !digits() {
			return "", false
		}
	}
	s.i = i
	return string(s.b[start:i]), true
}

func (s *scanner) integer(out *int64) bool {
	v, ok := s.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	*out = n
	return err == nil
}

// probeField reads the value of one ProbeResult field.
func (s *scanner) probeField(r *events.ProbeResult, key []byte) bool {
	switch string(key) {
	case "id":
		return s.str(&r.ID)
	case "at":
		return s.time(&r.At)
	case "app":
		return s.str(&r.App)
	case "pool":
		return s.str(&r.Pool)
	case "endpoint":
		return s.str(&r.Endpoint)
	case "address":
		return s.str(&r.Address)
	case "region":
		return s.str(&r.Region)
	case "prober":
		return s.str(&r.Prober)
	case "check":
		return s.str(&r.Check)
	case "ok":
		return s.boolean(&r.OK)
	case "latency_us":
		return s.integer(&r.LatencyMicros)
	case "error_class":
		return s.str(&r.ErrorClass)
	case "error":
		return s.str(&r.Error)
	case "http_status":
		var n int64
		if !s.integer(&n) || n != int64(int(n)) {
			return false
		}
		r.HTTPStatus = int(n)
		return true
	case "cert_expiry_days":
		v, ok := s.number()
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return false
		}
		r.CertExpiryDays = &f
		return true
	}
	return false
}
