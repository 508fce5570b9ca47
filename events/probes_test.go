package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func TestDecodeProbesNamesEveryResult(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	one, _ := events.New(events.TypeProbeCompleted, "p", at, events.ProbeResult{App: "shop", Region: "eu", OK: true})
	batch, _ := events.New(events.TypeProbeBatchCompleted, "p", at, events.ProbeBatch{Region: "us", Results: []events.ProbeResult{
		{ID: "mine", App: "shop"}, {App: "shop", Region: "eu"}, {App: "shop"}}})
	rs, err := events.DecodeProbes(one.Encode())
	if err != nil || len(rs) != 1 || rs[0].ID != one.ID || rs[0].Region != "eu" {
		t.Fatalf("single result: %+v, %v; want one named after its envelope", rs, err)
	}
	rs, err = events.DecodeProbes(batch.Encode())
	if err != nil || len(rs) != 3 {
		t.Fatalf("batch: %+v, %v", rs, err)
	}
	got := []string{rs[0].ID, rs[0].Region, rs[1].ID, rs[1].Region, rs[2].ID, rs[2].Region}
	want := []string{"mine", "us", batch.ID + "/1", "eu", batch.ID + "/2", "us"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("batch ids and regions = %v, want %v", got, want)
	}
}

func TestDecodeProbesRefusesWhatIsNoProbeEvent(t *testing.T) {
	for _, in := range []string{``, `null`, `[]`, `{"type":"detour.pool.up.v1","id":"1","time":"2026-01-01T00:00:00Z","data":{}}`,
		`{"type":"detour.probe.batch_completed.v1","id":"1","time":"2026-01-01T00:00:00Z","data":{"results":{}}}`,
		`{"type":"detour.probe.completed.v1","id":"1","time":"2026-01-01T00:00:00Z","data":"x"}`} {
		if _, err := events.DecodeProbes([]byte(in)); !errors.Is(err, events.ErrMalformed) {
			t.Errorf("events.DecodeProbes(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

func FuzzDecodeProbes(f *testing.F) {
	at := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	one, _ := events.New(events.TypeProbeCompleted, "p", at, events.ProbeResult{App: "shop", Pool: "west", Endpoint: "w1", Region: "eu", OK: true})
	batch, _ := events.New(events.TypeProbeBatchCompleted, "p", at, events.ProbeBatch{Region: "us", Results: []events.ProbeResult{{App: "shop"}}})
	f.Add(one.Encode())
	f.Add(batch.Encode())
	f.Add([]byte(`{"type":"detour.probe.batch_completed.v1","id":"1","time":"2026-01-01T00:00:00Z","data":{"results":[null,{}]}}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := events.DecodeProbes(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for i, r := range rs {
			if r.ID == "" {
				t.Fatalf("result %d has no id", i)
			}
		}
	})
}
