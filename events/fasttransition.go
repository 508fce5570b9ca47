package events

import "strings"

// TransitionHead is what a STATE follower checks of a transition's payload: the aggregate it
// names and the statuses it goes between. The rest of the payload (reason, results, votes,
// thresholds) is not decoded.
type TransitionHead struct {
	App      string `json:"app"`
	Pool     string `json:"pool"`
	Endpoint string `json:"endpoint"`
	Edge     string `json:"edge"`
	From     Status `json:"from"`
	To       Status `json:"to"`
}

// TransitionHead decodes the head of a transition envelope's payload, as Payload would decode
// it into a TransitionHead. A payload of the shape Encode writes is read by a scanner of its own
// without encoding/json's reflection; any other by encoding/json.
func (e Envelope) TransitionHead() (TransitionHead, error) {
	if h, ok := decodeTransitionHeadFast(upcast(e.Type, e.Data)); ok {
		return h, nil
	}
	var h TransitionHead
	err := e.Payload(&h)
	return h, err
}

// headKeys are the keys decodeTransitionHeadFast reads; another key that encoding/json would
// match to one of them (it ignores case) is left to encoding/json.
var headKeys = [...]string{"app", "pool", "endpoint", "edge", "from", "to"}

// decodeTransitionHeadFast decodes a TransitionHead from one JSON object whose strings carry no
// escapes, each head key at most once and as a string, every other key ASCII and no head key in
// another case, and whose other values are any JSON. It reports false for anything else: whenever
// it accepts data, json.Unmarshal accepts it too and gives the same head (a differential test and
// a fuzzer hold it to that).
func decodeTransitionHeadFast(data []byte) (TransitionHead, bool) {
	var h TransitionHead
	s := scanner{b: data}
	var seen uint8
	ok := s.object(func(key []byte) bool {
		for i, k := range headKeys {
			if string(key) != k {
				continue
			}
			if seen&(1<<i) != 0 {
				return false // encoding/json keeps the last; rare enough to leave to it
			}
			seen |= 1 << i
			return s.str(h.field(i))
		}
		for _, c := range key {
			if c >= 0x80 {
				return false // encoding/json folds some non-ASCII letters to ASCII ones
			}
		}
		for _, k := range headKeys {
			if strings.EqualFold(string(key), k) {
				return false
			}
		}
		return s.skip(0)
	})
	if !ok || s.skipSpace() != len(data) {
		return TransitionHead{}, false
	}
	return h, true
}

// field returns the field of h for headKeys[i].
func (h *TransitionHead) field(i int) *string {
	switch i {
	case 0:
		return &h.App
	case 1:
		return &h.Pool
	case 2:
		return &h.Endpoint
	case 3:
		return &h.Edge
	case 4:
		return (*string)(&h.From)
	}
	return (*string)(&h.To)
}

// maxSkipDepth bounds the nesting skip reads; deeper values are left to encoding/json.
const maxSkipDepth = 16

// skip reads any JSON value of the forms the scanner knows (strings without escapes, numbers,
// true, false, null, arrays and objects of them), at nesting depth.
func (s *scanner) skip(depth int) bool {
	if depth > maxSkipDepth || s.skipSpace() >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; c {
	case '"':
		_, ok := s.raw()
		return ok
	case '{':
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case '[':
		return s.array(func() bool { return s.skip(depth + 1) })
	case 't', 'f', 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return true
			}
		}
		return false
	}
	return s.skipNumber()
}
