package events

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// corpus encodes n results as probers publish them, with strings drawn from a set that includes
// what encoding/json must escape or replace.
func corpus(tb testing.TB, n int) [][]byte {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"", "app1", "eu-west", "10.0.0.1:80", "connection refused", "ünïcödé ✓", `say "hi"`, `back\slash`, "line\nbreak",
		"tab\tand\x01ctl", "<html>&amp;", "bad\xffutf8", "\u2028sep"}
	out := make([][]byte, 0, n)
	for i := range n {
		// Half the results hold only what needs no escaping, as real ones do.
		pool := words
		if i%2 == 0 {
			pool = words[:6]
		}
		pick := func() string { return pool[rng.IntN(len(pool))] }
		r := ProbeResult{ID: pick(), At: time.Unix(rng.Int64N(2e9), rng.Int64N(1e9)).UTC(), App: pick(), Pool: pick(),
			Endpoint: pick(), Address: pick(), Region: pick(), Prober: pick(), Check: pick(), OK: rng.IntN(2) == 0,
			LatencyMicros: rng.Int64N(1e7) - 5, ErrorClass: pick(), Error: pick(), HTTPStatus: rng.IntN(600),
			Window: rng.Int64N(4e9) * int64(rng.IntN(2))}
		if i%3 == 0 {
			d := rng.NormFloat64() * 1e3
			r.CertExpiryDays = &d
		}
		e, err := New(TypeProbeCompleted, pick(), r.At, r)
		if i%5 == 4 {
			// A batch of the results so far, as a busy prober publishes them.
			var b ProbeBatch
			b.Region, b.Prober = pick(), pick()
			for j := range i % 7 {
				rj := r
				rj.ID, rj.Region, rj.OK = "", []string{"", pick()}[j%2], j%2 == 0
				b.Results = append(b.Results, rj)
			}
			e, err = New(TypeProbeBatchCompleted, pick(), r.At, b)
		}
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, e.Encode())
	}
	return out
}

// sameAsLibrary fails when the fast path accepts data and its result differs from encoding/json's.
func sameAsLibrary(t *testing.T, data []byte) bool {
	t.Helper()
	fast, ok := decodeProbeFast(data, map[string]string{})
	if !ok {
		return false
	}
	want, err := decodeProbesJSON(data)
	if err != nil {
		t.Fatalf("the fast path accepted %q, which encoding/json refuses (%v)", data, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("%q:\nfast path     %+v\nencoding/json %+v", data, fast, want)
	}
	return true
}

func TestTheFastProbeDecoderAgreesWithEncodingJSON(t *testing.T) {
	accepted := 0
	for _, data := range corpus(t, 20000) {
		if sameAsLibrary(t, data) {
			accepted++
		}
	}
	// What needs no escaping goes the fast way: about half the corpus, and every plain result.
	if accepted < 8000 {
		t.Errorf("the fast path took %d of 20,000 results", accepted)
	}
	plain := ProbeResult{ID: "r1", At: time.Now().UTC(), App: "shop", Pool: "west", Endpoint: "e1", Region: "us-west", OK: true}
	e, _ := New(TypeProbeCompleted, "prober/us-west/p1", plain.At, plain)
	if !sameAsLibrary(t, e.Encode()) {
		t.Errorf("the fast path refused a plain result")
	}
	// Repeated keys: the last wins, as in encoding/json (whatever it keeps of the first).
	sameAsLibrary(t, []byte(`{"type":"detour.probe.batch_completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"results":[{"ok":true,"app":"a"}],"results":[{"ok":false}]}}`))
	sameAsLibrary(t, []byte(`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"app":"a","app":"b"},"data":{"ok":true}}`))
	for _, odd := range []string{
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"OK":true}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"ok":null}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"latency_us":1.5}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"window":"9"}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"0001-01-01T00:00:00Z","data":{}}`,
		`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}} x`,
		`{"type":"detour.probe.other.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"id":"x","type":"detour.probe.completed.v1","time":"2026-01-01T00:00:00Z","data":{}}`,
	} {
		if _, ok := decodeProbeFast([]byte(odd), nil); ok {
			t.Errorf("the fast path accepted %s", odd)
		}
	}
}

func FuzzDecodeProbeFast(f *testing.F) {
	for _, data := range corpus(f, 20) {
		f.Add(data)
	}
	f.Add([]byte(`{"type":"detour.probe.completed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"ok":true,"cert_expiry_days":-0.5e3}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameAsLibrary(t, data)
	})
}

// BenchmarkDecodeProbe measures the fast path against encoding/json on the same messages.
func BenchmarkDecodeProbe(b *testing.B) {
	var plain [][]byte
	for _, d := range corpus(b, 2000) {
		if _, ok := decodeProbeFast(d, nil); ok && !strings.Contains(string(d), `\`) {
			plain = append(plain, d)
		}
	}
	b.Run("fast", func(b *testing.B) {
		names := map[string]string{}
		for i := 0; b.Loop(); i++ {
			decodeProbeFast(plain[i%len(plain)], names)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			_, _ = decodeProbesJSON(plain[i%len(plain)])
		}
	})
}
