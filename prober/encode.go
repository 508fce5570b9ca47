package prober

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/detourdev/detour/events"
)

// Probe results are the bulk of what Detour publishes, so they are encoded by hand rather than
// by reflection: the JSON is the same document encoding/json writes for events.Envelope,
// events.ProbeResult and events.ProbeBatch (same keys, same omissions), at a fraction of the cost.

// appendEnvelope appends the envelope of one event whose payload data appends.
func appendEnvelope(b []byte, typ, id, source string, at time.Time, data func([]byte) []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"id":`...)
	b = appendString(b, id)
	b = append(b, `,"time":`...)
	b = appendTime(b, at.UTC())
	b = append(b, `,"source":`...)
	b = appendString(b, source)
	b = append(b, `,"data":`...)
	b = data(b)
	return append(b, '}')
}

// appendResult appends r as encoding/json would.
func appendResult(b []byte, r *events.ProbeResult) []byte {
	b = append(b, '{')
	if r.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, r.ID)
		b = append(b, ',')
	}
	b = append(b, `"at":`...)
	b = appendTime(b, r.At)
	for _, f := range [...]struct{ k, v string }{
		{`,"app":`, r.App}, {`,"pool":`, r.Pool}, {`,"endpoint":`, r.Endpoint}, {`,"address":`, r.Address},
		{`,"region":`, r.Region}, {`,"prober":`, r.Prober}, {`,"check":`, r.Check},
	} {
		b = append(b, f.k...)
		b = appendString(b, f.v)
	}
	if r.Window != 0 {
		b = append(b, `,"window":`...)
		b = strconv.AppendInt(b, r.Window, 10)
	}
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, r.OK)
	b = append(b, `,"latency_us":`...)
	b = strconv.AppendInt(b, r.LatencyMicros, 10)
	if r.ErrorClass != "" {
		b = append(b, `,"error_class":`...)
		b = appendString(b, r.ErrorClass)
	}
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, r.Error)
	}
	if r.HTTPStatus != 0 {
		b = append(b, `,"http_status":`...)
		b = strconv.AppendInt(b, int64(r.HTTPStatus), 10)
	}
	if r.CertExpiryDays != nil {
		b = append(b, `,"cert_expiry_days":`...)
		b = appendFloat(b, *r.CertExpiryDays)
	}
	return append(b, '}')
}

// appendBatch appends a batch of results.
func appendBatch(b []byte, region, prober string, rs []events.ProbeResult) []byte {
	b = append(b, `{"region":`...)
	b = appendString(b, region)
	b = append(b, `,"prober":`...)
	b = appendString(b, prober)
	b = append(b, `,"results":[`...)
	for i := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendResult(b, &rs[i])
	}
	return append(b, "]}"...)
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f as a JSON number; JSON has no NaN or infinities, so those become null.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.AppendFloat(b, f, 'e', -1, 64)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string: quotes, backslashes and control characters escaped,
// invalid UTF-8 replaced by U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
