package prober

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func sampleResult() events.ProbeResult {
	days := 89.51
	return events.ProbeResult{
		ID: "0192f0c8-1c2b-7c3d-9e4f-5a6b7c8d9e0f", At: time.Date(2026, 11, 22, 1, 2, 3, 456789000, time.UTC),
		App: "shop", Pool: "us-west", Endpoint: "127-0-0-11_8081", Address: "127.0.0.11:8081",
		Region: "eu", Prober: "p1", Check: "https", Window: 1795310162, OK: false, LatencyMicros: 1234,
		ErrorClass: ClassStatus, Error: "status 503, want \"200-399\"\n<html>\t\x01", HTTPStatus: 503, CertExpiryDays: &days,
	}
}

// decodeBoth decodes what appendResult wrote and what encoding/json writes for the same result.
func decodeBoth(t *testing.T, r events.ProbeResult) (mine, theirs events.ProbeResult) {
	t.Helper()
	b := appendResult(nil, &r)
	if !json.Valid(b) {
		t.Fatalf("appendResult wrote invalid JSON: %s", b)
	}
	if err := json.Unmarshal(b, &mine); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	std, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(std, &theirs); err != nil {
		t.Fatal(err)
	}
	return mine, theirs
}

func TestHandEncodedResultsDecodeToWhatEncodingJSONWouldGive(t *testing.T) {
	full := sampleResult()
	bare := events.ProbeResult{At: full.At, App: "a", Pool: "b", Endpoint: "c", Address: "127.0.0.1:1", Region: "r", Prober: "p", Check: "tcp", OK: true}
	odd := full
	odd.Error = "bad utf-8 \xff\xfe and emoji 🚦 and \u2028"
	for name, r := range map[string]events.ProbeResult{"every field": full, "only the required fields": bare, "odd text": odd} {
		t.Run(name, func(t *testing.T) {
			mine, theirs := decodeBoth(t, r)
			if !reflect.DeepEqual(mine, theirs) {
				t.Errorf("decoded\n%+v\nwant\n%+v", mine, theirs)
			}
		})
	}
}

func TestHandEncodedEnvelopesAndBatchesAreReadByTheEventsPackage(t *testing.T) {
	r := sampleResult()
	at := r.At
	single := appendEnvelope(nil, events.TypeProbeCompleted, r.ID, "prober/eu/p1", at, func(b []byte) []byte { return appendResult(b, &r) })
	e, err := events.Decode(single)
	if err != nil {
		t.Fatalf("decode envelope %s: %v", single, err)
	}
	var got events.ProbeResult
	if err := e.Payload(&got); err != nil {
		t.Fatal(err)
	}
	if e.Type != events.TypeProbeCompleted || e.ID != r.ID || e.Source != "prober/eu/p1" || !e.Time.Equal(at) || got.Error != r.Error {
		t.Errorf("envelope %+v with %+v", e, got)
	}

	rs := []events.ProbeResult{r, r}
	rs[1].Endpoint = "other"
	batch := appendEnvelope(nil, events.TypeProbeBatchCompleted, "b1", "prober/eu/p1", at, func(b []byte) []byte { return appendBatch(b, "eu", "p1", rs) })
	e, err = events.Decode(batch)
	if err != nil {
		t.Fatalf("decode batch %s: %v", batch, err)
	}
	var pb events.ProbeBatch
	if err := e.Payload(&pb); err != nil {
		t.Fatal(err)
	}
	if pb.Region != "eu" || pb.Prober != "p1" || len(pb.Results) != 2 || pb.Results[1].Endpoint != "other" {
		t.Errorf("batch %+v", pb)
	}
}

func FuzzAppendResult(f *testing.F) {
	f.Add("status 503", "shop", int64(12), 200, 3.5, true)
	f.Add("\x00\x1f\"\\\n\xff", "é", int64(-1), 0, 1e-9, false)
	f.Add("", "", int64(0), 599, 1e22, false)
	f.Fuzz(func(t *testing.T, msg, app string, latency int64, status int, days float64, ok bool) {
		r := events.ProbeResult{At: time.Unix(latency, 0).UTC(), App: app, Error: msg, ErrorClass: msg,
			LatencyMicros: latency, Window: latency, HTTPStatus: status, OK: ok, CertExpiryDays: &days}
		if _, err := json.Marshal(r); err != nil {
			return // encoding/json refuses it too (NaN, infinities, years beyond 9999)
		}
		mine, theirs := decodeBoth(t, r)
		if !reflect.DeepEqual(mine, theirs) {
			t.Fatalf("decoded\n%+v\nwant\n%+v", mine, theirs)
		}
	})
}
