package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkAppendRegion stores the endpoint transitions of a region of 10,000 endpoints in
// STATE (in memory, in process) three ways, and reports transitions stored per second: one
// event per transition appended as the decider does (expected last subject sequence and
// Nats-Msg-Id, 1,000 in flight), the same messages as JetStream atomic batches of 1,000 (the
// server's limit), and one event carrying 500 transitions per message (a contract STATE does
// not have: no per-aggregate subject, guard or id). Every way includes encoding the events.
// It measures what a change of STATE's contract to batched events would buy: see the README's
// region failure section for the figures.
func BenchmarkAppendRegion(b *testing.B) {
	const n = 10000
	ts := make([]events.Transition, n)
	for i := range ts {
		ts[i] = events.Transition{App: fmt.Sprintf("app%d", i), Pool: "main", Endpoint: "e", Address: "10.1.2.3:80",
			From: events.StatusUp, To: events.StatusDown, Reason: "safe: 3 consecutive failures (fall 3)",
			Results: []string{"r1-" + strconv.Itoa(i), "r2-" + strconv.Itoa(i), "r3-" + strconv.Itoa(i)},
			Votes:   []events.Vote{{Region: "safe", Status: events.StatusDown}}, Thresholds: events.Thresholds{Fall: 3, Rise: 2, IntervalMS: 1000}}
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	derive := func(round, i int) events.Envelope {
		e, err := events.Derived(events.TypeEndpointDown, "decider", "cause-"+strconv.Itoa(i), strconv.Itoa(round), at, ts[i])
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	subject := func(round, i int) string {
		return events.EndpointStateSubject(fmt.Sprintf("app%d-%d", i, round), "main", "e")
	}
	ctx := context.Background()
	for _, way := range []string{"one event per transition", "atomic batches", "500 transitions per event"} {
		b.Run(way, func(b *testing.B) {
			srv := eventstest.Start(b)
			if way == "atomic batches" {
				st, err := srv.JS.Stream(ctx, events.StreamState)
				if err != nil {
					b.Fatal(err)
				}
				cfg := st.CachedInfo().Config
				cfg.AllowAtomicPublish = true
				if _, err := srv.JS.UpdateStream(ctx, cfg); err != nil {
					b.Fatal(err)
				}
			}
			round := 0
			for b.Loop() {
				round++
				switch way {
				case "one event per transition":
					appendPipelined(ctx, b, srv.JS, n, func(i int) (string, events.Envelope) { return subject(round, i), derive(round, i) })
				case "atomic batches":
					for start := 0; start < n; start += 1000 {
						appendAtomic(b, srv.Conn, fmt.Sprintf("b%d-%d", round, start), 1000, func(i int) (string, events.Envelope) {
							return subject(round, start+i), derive(round, start+i)
						})
					}
				default:
					var futures []jetstream.PubAckFuture
					for start := 0; start < n; start += 500 {
						e, err := events.New("detour.state.batch.v1", "decider", at, ts[start:start+500])
						if err != nil {
							b.Fatal(err)
						}
						f, err := srv.JS.PublishMsgAsync(&nats.Msg{Subject: fmt.Sprintf("detour.state.batch.%d.%d", round, start), Data: e.Encode()})
						if err != nil {
							b.Fatal(err)
						}
						futures = append(futures, f)
					}
					for _, f := range futures {
						select {
						case <-f.Ok():
						case err := <-f.Err():
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "transitions/s")
		})
	}
}

// appendPipelined appends n events with events.AppendAsync, 1,000 in flight, each after an
// empty subject.
func appendPipelined(ctx context.Context, b *testing.B, js jetstream.JetStream, n int, ev func(int) (string, events.Envelope)) {
	futures := make([]jetstream.PubAckFuture, 0, 1000)
	envs := make([]events.Envelope, 0, 1000)
	for start := 0; start < n; start += 1000 {
		futures, envs = futures[:0], envs[:0]
		for i := start; i < min(start+1000, n); i++ {
			subject, e := ev(i)
			f, err := events.AppendAsync(js, subject, e, 0)
			if err != nil {
				b.Fatal(err)
			}
			futures, envs = append(futures, f), append(envs, e)
		}
		for i, f := range futures {
			if _, err := events.AppendResult(ctx, f, envs[i], 0); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// appendAtomic stores n events as one JetStream atomic batch (Nats-Batch-Id, -Sequence and
// -Commit), each with its expected last subject sequence and id, and waits for the commit.
func appendAtomic(b *testing.B, nc *nats.Conn, id string, n int, ev func(int) (string, events.Envelope)) {
	for i := range n {
		subject, e := ev(i)
		m := nats.NewMsg(subject)
		m.Data = e.Encode()
		m.Header.Set(jetstream.MsgIDHeader, e.ID)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < n-1 {
			if err := nc.PublishMsg(m); err != nil {
				b.Fatal(err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		var ack struct {
			Count int `json:"count"`
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil || ack.Error != nil || ack.Count != n {
			b.Fatalf("atomic batch %s: %s", id, resp.Data)
		}
	}
}
