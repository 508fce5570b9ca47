package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// envelopeCorpus is every kind of envelope Detour publishes, with strings encoding/json must
// escape among them, and odd shapes a hand-written publisher might send.
func envelopeCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	at := time.Date(2026, 12, 1, 18, 0, 0, 123456789, time.UTC)
	for _, data := range []any{
		Transition{App: "shop", Pool: "west", Endpoint: "w1", From: StatusUp, To: StatusDown, Reason: "3 failures", Results: []string{"a", "b/1"}},
		Heartbeat{Edge: "edge-1", Region: "eu", Seq: 7, Started: at, IntervalMS: 1000, Apps: []string{"shop", "ünï"}},
		EdgeRoute{Edge: "edge-1", StateSeq: 42, Route: AppRoute{App: "shop", Pool: "west", Available: true}},
		map[string]any{"quote": `say "hi"`, "ctl": "a\x01b", "html": "<&>", "sep": "\u2028", "bad": "\xff", "n": 1.5e-3, "null": nil},
		[]int{1, 2, 3}, "a string", 12, nil,
	} {
		for _, cause := range []string{"", "0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b"} {
			e, err := Derived(TypeEndpointDown, "decider/a", cause, "k", at, data)
			if err != nil {
				tb.Fatal(err)
			}
			e.Cause = cause
			out = append(out, e.Encode())
			e.Source = `prober "quoted"`
			out = append(out, e.Encode())
		}
	}
	for _, odd := range []string{
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","source":"s","data":{"a":1}}`,
		` { "type" : "detour.x.v1" , "id":"i", "time":"2026-01-01T00:00:00+02:00","data" : [ 1 , {"b":null} ] } `,
		`{"data":{},"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z"}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{},"id":"j"}`,
		`{"type":"detour.x.v1","type":"detour.y.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"Type":"detour.x.v1","ID":"i","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","extra":1,"data":{}}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","cause":null,"data":{}}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":null}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{"a":1},"b":2}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{"a":1}}}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{"a":1}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":{"a":1}` + "\v}",
		`{"type":"detour.x.v1","id":"i","time":"not a time","data":{}}`,
		`{"type":"detour.x.v1","id":"i","time":"2026-01-01T00:00:00Z","data":}`,
		`{"type":"detour.x.v1","id":"i\u0041","time":"2026-01-01T00:00:00Z","data":1}`,
		`{"type":"det` + "\xff" + `our","id":"i","time":"2026-01-01T00:00:00Z","data":1}`,
		`{}`, `[]`, ``, `null`,
	} {
		out = append(out, []byte(odd))
	}
	return out
}

// sameEnvelope fails when the fast path accepts b and its envelope differs from encoding/json's,
// and reports whether it accepted b.
func sameEnvelope(t *testing.T, b []byte) bool {
	t.Helper()
	fast, ok := decodeEnvelopeFast(b)
	if !ok {
		return false
	}
	var want Envelope
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("the fast path accepted %q, which encoding/json refuses (%v)", b, err)
	}
	if !reflect.DeepEqual(fast, want) || !fast.Time.Equal(want.Time) || fast.Time.Location().String() != want.Time.Location().String() {
		t.Fatalf("%q:\nfast path     %+v\nencoding/json %+v", b, fast, want)
	}
	return true
}

func TestTheFastEnvelopeDecoderAgreesWithEncodingJSON(t *testing.T) {
	accepted := 0
	for _, b := range envelopeCorpus(t) {
		if sameEnvelope(t, b) {
			accepted++
		}
	}
	// Every envelope Encode wrote without escapes in its strings goes the fast way: the 16 of the
	// corpus whose source is not quoted, three of its odd shapes, and a plain heartbeat.
	plain, err := New(TypeEdgeHeartbeat, "edge/edge-1", time.Now(), Heartbeat{Edge: "edge-1", Region: "eu", Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !sameEnvelope(t, plain.Encode()) || accepted != 19 {
		t.Errorf("the fast path took %d of the corpus, or refused a plain heartbeat", accepted)
	}
	// The data is the envelope's own: the input's buffer can be reused.
	b := plain.Encode()
	e, _ := decodeEnvelopeFast(b)
	before := string(e.Data)
	for i := range b {
		b[i] = ' '
	}
	if string(e.Data) != before {
		t.Errorf("the envelope's data changed with its input's buffer")
	}
}

func FuzzDecodeEnvelopeFast(f *testing.F) {
	for _, b := range envelopeCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameEnvelope(t, b)
	})
}

// BenchmarkDecodeEnvelope measures the fast path against encoding/json on a STATE transition
// and on a route, as the decider, the controller and the DNS server read them.
func BenchmarkDecodeEnvelope(b *testing.B) {
	at := time.Now()
	tr, _ := Derived(TypeEndpointDown, "decider/decider-1", "0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b/17", "k", at,
		Transition{App: "app1234", Pool: "main", Endpoint: "e", From: StatusUp, To: StatusDown, Reason: "3 consecutive failures",
			Results: []string{"0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b/17"}})
	rt, _ := Derived(TypeRouteComputed, "controller-1", "0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b", "k", at,
		EdgeRoute{Edge: "edge-0", StateSeq: 56414, Route: AppRoute{App: "app1234", Pool: "main", Available: false}})
	for _, m := range []struct {
		name string
		b    []byte
	}{{"transition", tr.Encode()}, {"route", rt.Encode()}} {
		b.Run(m.name+"/fast", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := decodeEnvelopeFast(m.b); !ok {
					b.Fatal("refused")
				}
			}
		})
		b.Run(m.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var e Envelope
				if err := json.Unmarshal(m.b, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
