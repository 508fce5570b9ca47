package events

import "encoding/json"

// decodeEnvelopeFast decodes an envelope of the shape Encode writes (type, id, time, source and
// cause as strings without escapes, each once, then data last), which is what Detour publishes,
// without encoding/json's reflection and its second pass over the data. It reports false for
// anything else, and Decode falls back to encoding/json: whenever it accepts b, the envelope is
// the one json.Unmarshal gives (a differential test and a fuzzer hold it to that). The data is
// copied, as json.RawMessage's decoding copies it.
func decodeEnvelopeFast(b []byte) (Envelope, bool) {
	var e Envelope
	s := scanner{b: b}
	var seen uint8 // a bit per key read
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	var data []byte
	ok := s.object(func(key []byte) bool {
		if data != nil {
			return false // data comes last
		}
		switch string(key) {
		case "type":
			return once(1) && s.str(&e.Type)
		case "id":
			return once(2) && s.str(&e.ID)
		case "time":
			return once(4) && s.time(&e.Time)
		case "source":
			return once(8) && s.str(&e.Source)
		case "cause":
			return once(16) && s.str(&e.Cause)
		case "data":
			// The value runs to the envelope's closing brace: it must be one JSON value.
			end := len(b)
			for end > 0 && isSpace(b[end-1]) {
				end--
			}
			if end == 0 || b[end-1] != '}' {
				return false
			}
			start := s.skipSpace()
			stop := end - 1
			for stop > start && isSpace(b[stop-1]) {
				stop--
			}
			if stop <= start || !json.Valid(b[start:stop]) {
				return false
			}
			data = b[start:stop]
			s.i = stop
			return true
		}
		return false
	})
	if !ok || data == nil || s.skipSpace() != len(b) {
		return Envelope{}, false
	}
	e.Data = append(json.RawMessage(nil), data...)
	return e, true
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
