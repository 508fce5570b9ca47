package events

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// decodeProbeFast decodes a PROBES message of the shape Encode writes (the type first,
// every string without escapes, every key one the payload types have, no null), which is what
// probers publish, several times faster than encoding/json. It reports false for anything else,
// and DecodeProbesNamed falls back to encoding/json (decodeProbesJSON): whenever it accepts a
// message, its results are the ones decodeProbesJSON gives (a differential test and a fuzzer hold
// it to that).
//
// names, when not nil, interns the strings that repeat from one result to the next (app, pool,
// endpoint, address, region, prober, check, error class and error), so a million results hold a
// few thousand of them instead of ten million.
func decodeProbeFast(data []byte, names map[string]string) ([]ProbeResult, bool) {
	s := scanner{b: data, names: names}
	var rs []ProbeResult
	var typ, id string
	var batch ProbeBatch
	var at time.Time
	sawData := false
	ok := s.object(func(key []byte) bool {
		switch {
		case typ == "" && string(key) != "type":
			return false // the type comes first, so the data is read as what it is
		case string(key) == "type":
			return typ == "" && s.str(&typ) && (typ == TypeProbeCompleted || typ == TypeProbeBatchCompleted)
		case string(key) == "id":
			return s.str(&id)
		case string(key) == "time":
			return s.time(&at)
		case string(key) == "source" || string(key) == "cause":
			_, ok := s.raw()
			return ok
		case string(key) != "data":
			return false
		case typ == TypeProbeCompleted:
			sawData, rs = true, []ProbeResult{{}}
			return s.object(func(key []byte) bool { return s.probeField(&rs[0], key) })
		}
		sawData, batch = true, ProbeBatch{}
		return s.object(func(key []byte) bool {
			switch string(key) {
			case "region":
				return s.name(&batch.Region)
			case "prober":
				return s.name(&batch.Prober)
			case "results":
				if batch.Results != nil {
					return false // encoding/json would decode the second array over the first
				}
				batch.Results = []ProbeResult{}
				return s.array(func() bool {
					batch.Results = append(batch.Results, ProbeResult{})
					r := &batch.Results[len(batch.Results)-1]
					return s.object(func(key []byte) bool { return s.probeField(r, key) })
				})
			}
			return false
		})
	})
	if !ok || s.skipSpace() != len(data) || id == "" || at.IsZero() || !sawData {
		return nil, false
	}
	if typ == TypeProbeCompleted {
		if rs[0].ID == "" {
			rs[0].ID = id
		}
		return rs, true
	}
	for i := range batch.Results {
		r := &batch.Results[i]
		if r.ID == "" {
			r.ID = id + "/" + strconv.Itoa(i)
		}
		if r.Region == "" {
			r.Region = batch.Region
		}
	}
	return batch.Results, true
}

// scanner reads the few JSON forms decodeProbeFast accepts; each method reports false on any
// other, and the message is then decoded by encoding/json.
type scanner struct {
	b     []byte
	i     int
	names map[string]string
}

// maxNames bounds an intern table: past it, new strings are allocated as they come.
const maxNames = 1 << 16

// name reads a string as str does, interned.
func (s *scanner) name(out *string) bool {
	v, ok := s.raw()
	if !ok {
		return false
	}
	if n, found := s.names[string(v)]; found {
		*out = n
		return true
	}
	*out = string(v)
	if s.names != nil && len(s.names) < maxNames {
		s.names[*out] = *out
	}
	return true
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

// array reads [value, …], calling elem to read each value.
func (s *scanner) array(elem func() bool) bool {
	if !s.byte('[') {
		return false
	}
	if s.byte(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.byte(']') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// number reads a JSON number (RFC 8259 grammar) and returns its text.
func (s *scanner) number() (string, bool) {
	start := s.skipSpace()
	if !s.skipNumber() {
		return "", false
	}
	return string(s.b[start:s.i]), true
}

// skipNumber reads a JSON number as number does, without returning it.
func (s *scanner) skipNumber() bool {
	i := s.skipSpace()
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
		return false
	}
	if i < len(s.b) && s.b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s.b) && (s.b[i] == 'e' || s.b[i] == 'E') {
		i++
		if i < len(s.b) && (s.b[i] == '+' || s.b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return true
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
func (s *scanner) probeField(r *ProbeResult, key []byte) bool {
	switch string(key) {
	case "id":
		return s.str(&r.ID)
	case "at":
		return s.time(&r.At)
	case "app":
		return s.name(&r.App)
	case "pool":
		return s.name(&r.Pool)
	case "endpoint":
		return s.name(&r.Endpoint)
	case "address":
		return s.name(&r.Address)
	case "region":
		return s.name(&r.Region)
	case "prober":
		return s.name(&r.Prober)
	case "check":
		return s.name(&r.Check)
	case "window":
		return s.integer(&r.Window)
	case "ok":
		return s.boolean(&r.OK)
	case "latency_us":
		return s.integer(&r.LatencyMicros)
	case "error_class":
		return s.name(&r.ErrorClass)
	case "error":
		return s.name(&r.Error)
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
