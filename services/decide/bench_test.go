package decide

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// benchFleet is 10,000 endpoints probed from 3 regions at a 1s interval, with result ids as a
// batch prober names them.
const benchEndpoints, benchRegions = 10_000, 3

var benchRegionNames = []string{"eu-west", "us-east", "ap-south"}

func benchResults(round int) []Result {
	rs := make([]Result, 0, benchEndpoints*benchRegions)
	at := t0.Add(time.Duration(round) * time.Second)
	for e := range benchEndpoints {
		for r := range benchRegions {
			// Every 97th endpoint fails for a while, so that transitions happen too.
			ok := e%97 != 0 || round%10 < 5
			rs = append(rs, Result{ID: fmt.Sprintf("0198a7c4-5e1f-7b3a-9c2d-%012d/%d", round, e*benchRegions+r),
				Region: benchRegionNames[r], At: at, OK: ok})
		}
	}
	return rs
}

// BenchmarkObserve folds results into 10,000 endpoints × 3 regions, against its peer: decoding
// one result from its JSON form, which the decider does for every result anyway. One op is one
// result.
func BenchmarkObserve(b *testing.B) {
	b.Run("fold", func(b *testing.B) {
		p := testPolicy()
		eps := make([]Endpoint, benchEndpoints)
		rounds := make([][]Result, 20)
		for i := range rounds {
			rounds[i] = benchResults(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		n := 0
		for round := 0; n < b.N; round++ {
			rs := rounds[round%len(rounds)]
			for i := 0; i < len(rs) && n < b.N; i++ {
				eps[i/benchRegions].Observe(rs[i], p)
				n++
			}
			if round%len(rounds) == len(rounds)-1 {
				// Play the recording again with time moving on: shift every endpoint's clock back.
				for j := range eps {
					for k := range eps[j].Regions {
						eps[j].Regions[k].Last = eps[j].Regions[k].Last.Add(-time.Duration(len(rounds)) * time.Second)
					}
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
	})
	b.Run("json-decode-peer", func(b *testing.B) {
		data, err := json.Marshal(events.ProbeResult{ID: "0198a7c4-5e1f-7b3a-9c2d-000000000001/17", At: t0, App: "app1", Pool: "pool2",
			Endpoint: "10-1-2-3_80", Region: "eu-west", Prober: "p1", Check: "tcp", OK: true, LatencyMicros: 812})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			var r events.ProbeResult
			if err := json.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
	})
}

// BenchmarkMemoryPerEndpoint measures the heap the pure state of one endpoint holds once 3
// regions have each filled their streak of result ids.
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	p := testPolicy()
	rounds := [][]Result{benchResults(0), benchResults(1), benchResults(2)}
	var perEndpoint float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		eps := make([]Endpoint, benchEndpoints)
		for _, rs := range rounds {
			for i := range rs {
				r := rs[i]
				r.ID = string([]byte(r.ID)) // a fresh copy, as a decoded message gives
				eps[i/benchRegions].Observe(r, p)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perEndpoint = float64(after.HeapAlloc-before.HeapAlloc) / benchEndpoints
		runtime.KeepAlive(eps)
	}
	b.ReportMetric(perEndpoint, "B/endpoint")
}
