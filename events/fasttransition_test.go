package events

import (
	"encoding/json"
	"testing"
	"time"
)

// transitionCorpus holds transition payloads as the decider writes them and odd shapes the fast
// path must leave to encoding/json or read as it does.
func transitionCorpus(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, tr := range []Transition{
		{App: "app1234", Pool: "main", Endpoint: "e", From: StatusUp, To: StatusDown, Reason: "3 consecutive failures",
			Results: []string{"0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b/17", "x"}},
		{App: "shop", Pool: "p1", From: StatusDown, To: StatusUp, Reason: "2 of 3 available",
			Votes:      []Vote{{Region: "eu", Status: StatusUp}, {Region: "us", Status: StatusDown}},
			Thresholds: Thresholds{Fall: 3, Rise: 2, Quorum: 0.5, HoldDownMS: -1, MinAvailable: "50%", IntervalMS: 10000}},
		{Edge: "edge-1", From: StatusUnknown, To: StatusDown, Reason: "heartbeat \"late\""},
		{},
	} {
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for _, s := range []string{
		`{"app":"a","APP":"b"}`, `{"App":"a"}`, `{"app":"a","app":"b"}`, `{"app":null}`, `{"app":1}`,
		`{"from":"up","to":"down","x":{"y":[1,2.5e3,-0,true,false,null,{"z":[]}]}}`, `{"app":"a\u0062"}`,
		`{"app":"a"} `, ` {"app":"a"}`, `{"app":"a"}x`, `{"app":"a",}`, `{"x":01}`, `{"x":tru}`, `{"x":1.}`, `null`, `[]`,
		`{"ſ":"x"}`, `{"\u0041pp":"x"}`, `{"x":"\xff"}`, `{"x":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}`, `{"x":"a`, `{`, ``,
		`{"app":"a","pool":"p","endpoint":"e","edge":"g","from":"up","to":"down","reason":"r"}`, `{"x": -1.5E+2 , "app" : "a" }`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// sameHead checks that whatever the fast path accepts, encoding/json decodes without error and to
// the same head, and reports whether the fast path accepted data.
func sameHead(t *testing.T, data []byte) bool {
	t.Helper()
	fast, ok := decodeTransitionHeadFast(data)
	if !ok {
		return false
	}
	var want TransitionHead
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("%q: the fast path accepted what encoding/json refuses (%v)", data, err)
	}
	if fast != want {
		t.Fatalf("%q:\nfast path     %+v\nencoding/json %+v", data, fast, want)
	}
	return true
}

func TestTheFastTransitionHeadAgreesWithEncodingJSON(t *testing.T) {
	accepted := 0
	for _, b := range transitionCorpus(t) {
		if sameHead(t, b) {
			accepted++
		}
	}
	// The payloads json.Marshal wrote but the one with an escaped quote, and five odd shapes.
	if accepted != 8 {
		t.Errorf("the fast path took %d of the corpus, want 8", accepted)
	}
	// An envelope's head is the same whichever way it was read.
	e, err := New(TypeEndpointDown, "decider/d1", time.Now(), Transition{App: "a", Pool: "p", Endpoint: "e", From: StatusUp, To: StatusDown})
	if err != nil {
		t.Fatal(err)
	}
	h, err := e.TransitionHead()
	if want := (TransitionHead{App: "a", Pool: "p", Endpoint: "e", From: StatusUp, To: StatusDown}); err != nil || h != want {
		t.Errorf("TransitionHead() = %+v, %v; want %+v", h, err, want)
	}
	e.Data = json.RawMessage(`{"app":1}`)
	if _, err := e.TransitionHead(); err == nil {
		t.Errorf("a payload whose app is a number decoded without error")
	}
}

func FuzzDecodeTransitionHead(f *testing.F) {
	for _, b := range transitionCorpus(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameHead(t, b) })
}

// BenchmarkTransitionHead is what a STATE follower's check of a transition costs to decode: the
// fast path against encoding/json (Payload into the same fields, as the check decoded them).
func BenchmarkTransitionHead(b *testing.B) {
	e, err := New(TypeEndpointDown, "decider/decider-1", time.Now(), Transition{App: "app1234", Pool: "main", Endpoint: "e",
		Address: "10.1.4.210:80", From: StatusUp, To: StatusDown, Reason: "3 of 3 checks failed",
		Results: []string{"0198c4c2-7f3a-7c1e-9a4b-3c2d1e0f9a8b/17"}, Thresholds: Thresholds{Fall: 3, Rise: 2, IntervalMS: 10000}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.TransitionHead(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var h TransitionHead
			if err := e.Payload(&h); err != nil {
				b.Fatal(err)
			}
		}
	})
}
