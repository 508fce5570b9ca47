package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// BenchmarkAppendCeiling measures how many per-aggregate appends STATE takes per second on this
// machine, each on its own subject with its expected last subject sequence and Nats-Msg-Id, as
// the decider appends: stored in memory or in files, on one server (R1) or a cluster of three in
// process (R3), from one connection or four in parallel, with the decider's envelope or a trimmed
// one (no results, votes or reason), and pipelined one by one (1,000 in flight) or as JetStream
// fast batches of 1,000 (ADR-50, nats-server 2.14+, allow_batched: each message still checked
// on its own, one acknowledgement per batch), alone or followed by the read a writer would need
// to learn each append's stream sequence (one direct get of the last message of the batch's
// 1,000 subjects). 10,000 appends per iteration; it reports transitions/s, bytes per message,
// and for the read-back the appends per iteration it did not see stored.
func BenchmarkAppendCeiling(b *testing.B) {
	const n = 10000
	type way struct {
		storage  string
		replicas int
		conns    int
		envelope string
		send     string
	}
	ways := []way{
		{"memory", 1, 1, "full", "pipelined"},
		{"file", 1, 1, "full", "pipelined"},
		{"memory", 1, 4, "full", "pipelined"},
		{"memory", 1, 1, "trimmed", "pipelined"},
		{"memory", 1, 1, "full", "fast batch"},
		{"memory", 1, 1, "full", "fast batch, read back"},
		{"file", 1, 1, "full", "fast batch"},
		{"file", 3, 1, "full", "pipelined"},
		{"file", 3, 4, "full", "pipelined"},
		{"file", 3, 1, "full", "fast batch"},
		{"file", 3, 1, "full", "fast batch, read back"},
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, w := range ways {
		name := fmt.Sprintf("%s/R%d/conns=%d/%s/%s", w.storage, w.replicas, w.conns, w.envelope, w.send)
		b.Run(name, func(b *testing.B) {
			urls := startStore(b, w.storage == "memory", w.replicas)
			conns := make([]*nats.Conn, w.conns)
			jss := make([]jetstream.JetStream, w.conns)
			for i := range conns {
				conns[i] = eventstest.Connect(b, urls)
				js, err := jetstream.New(conns[i])
				if err != nil {
					b.Fatal(err)
				}
				jss[i] = js
			}
			ev := func(round, i int) (string, events.Envelope) {
				t := events.Transition{App: fmt.Sprintf("app%d", i), Pool: "main", Endpoint: "e", From: events.StatusUp, To: events.StatusDown}
				if w.envelope == "full" {
					t.Address, t.Reason = "10.1.2.3:80", "safe: 3 consecutive failures (fall 3)"
					t.Results = []string{"r1-" + strconv.Itoa(i), "r2-" + strconv.Itoa(i), "r3-" + strconv.Itoa(i)}
					t.Votes = []events.Vote{{Region: "safe", Status: events.StatusDown}}
					t.Thresholds = events.Thresholds{Fall: 3, Rise: 2, IntervalMS: 1000}
				}
				e, err := events.Derived(events.TypeEndpointDown, "decider", "cause-"+strconv.Itoa(i), strconv.Itoa(round), at, t)
				if err != nil {
					b.Fatal(err)
				}
				return events.EndpointStateSubject(fmt.Sprintf("app%d-%d", i, round), "main", "e"), e
			}
			_, sample := ev(0, 0)
			round := 0
			var unseen atomic.Int64
			for b.Loop() {
				round++
				var wg sync.WaitGroup
				share := n / w.conns
				for c := range w.conns {
					wg.Go(func() {
						part := func(i int) (string, events.Envelope) { return ev(round, c*share+i) }
						if w.send == "pipelined" {
							appendPipelined(ctx, b, jss[c], share, part)
						} else {
							unseen.Add(int64(appendFast(b, conns[c], share, part, w.send == "fast batch, read back")))
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "transitions/s")
			b.ReportMetric(float64(len(sample.Encode())), "bytes/msg")
			if w.send == "fast batch, read back" {
				b.ReportMetric(float64(unseen.Load())/float64(b.N), "unseen/op")
			}
		})
	}
}

// startStore runs JetStream with Detour's streams, on one server or a cluster of replicas
// servers in process, and returns the URL of one server. // STATE takes fast batches.
func startStore(b *testing.B, memory bool, replicas int) string {
	b.Helper()
	var url string
	if replicas == 1 {
		srv := eventstest.StartWith(b, eventstest.Options{NoStreams: true})
		url = srv.URL
	} else {
		url = startCluster(b, replicas)
	}
	nc := eventstest.Connect(b, url)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := events.EnsureStreams(cctx, js, events.StreamOptions{Memory: memory, Replicas: replicas})
		ccancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the cluster is still electing its leaders
	}
	st, err := js.Stream(ctx, events.StreamState)
	if err != nil {
		b.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowBatchPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	return url
}

// startCluster runs a JetStream cluster of n servers on loopback, in process, and returns the
// client URL of the first.
func startCluster(b *testing.B, n int) string {
	b.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var first string
	for i, p := range ports {
		o := &server.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: b.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: p}, Routes: server.RoutesFromStr(strings.Join(routes, ","))}
		s, err := server.NewServer(o)
		if err != nil {
			b.Fatal(err)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			b.Fatal("cluster node not ready")
		}
		b.Cleanup(s.Shutdown)
		if i == 0 {
			first = s.ClientURL()
		}
	}
	return first
}

// appendFast stores n events as JetStream fast batches of 1,000 (the batch id, flow, gap mode,
// batch sequence and operation ride in the reply subject; gap mode "fail" stops a batch at its
// first failed check), each with its expected last subject sequence and id, and waits for each
// batch's acknowledgement: it holds the stream sequence of the batch's last message only. With
// readBack, it then reads the last message of every subject of the batch (one direct get,
// multi_last) to learn where each was stored.
// It returns how many appends the read-back did not see stored.
func appendFast(b *testing.B, nc *nats.Conn, n int, ev func(int) (string, events.Envelope), readBack bool) (unseen int) {
	const size, flow = 1000, 500
	for start := 0; start < n; start += size {
		count := min(size, n-start)
		inbox := nc.NewInbox()
		replies := make(chan *nats.Msg, 2*count+16)
		sub, err := nc.ChanSubscribe(inbox+".>", replies)
		if err != nil {
			b.Fatal(err)
		}
		id := nuid.Next()
		subjects := make([]string, count)
		ids := map[string]string{}
		for i := range count {
			subject, e := ev(start + i)
			subjects[i], ids[subject] = subject, e.ID
			op := 1 // append
			switch {
			case i == count-1:
				op = 2 // commit
			case i == 0:
				op = 0 // start
			}
			m := nats.NewMsg(subject)
			m.Data = e.Encode()
			m.Header.Set("Detour-Type", e.Type)
			m.Header.Set(jetstream.MsgIDHeader, e.ID)
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
			m.Reply = fmt.Sprintf("%s.%s.%d.fail.%d.%d.$FI", inbox, id, flow, i+1, op)
			if err := nc.PublishMsg(m); err != nil {
				b.Fatal(err)
			}
		}
		for committed := false; !committed; {
			select {
			case m := <-replies:
				var r struct {
					Type  string          `json:"type"`
					Count int             `json:"count"`
					Error json.RawMessage `json:"error"`
				}
				if err := json.Unmarshal(m.Data, &r); err != nil || r.Error != nil || r.Type == "err" || r.Type == "gap" {
					b.Fatalf("fast batch: %s", m.Data)
				}
				if r.Type == "" && r.Count != count {
					b.Fatalf("fast batch stored %d of %d: %s", r.Count, count, m.Data)
				}
				committed = r.Type == ""
			case <-time.After(10 * time.Second):
				b.Fatal("fast batch: no acknowledgement in 10s")
			}
		}
		_ = sub.Unsubscribe()
		if readBack {
			unseen += readLast(b, nc, subjects, ids)
		}
	}
	return unseen
}

// readLast reads the last message of each of subjects from STATE with one direct get and returns
// how many of them did not show the event of ids: on a cluster a follower may answer before it
// has stored the batch.
func readLast(b *testing.B, nc *nats.Conn, subjects []string, ids map[string]string) int {
	req, err := json.Marshal(map[string][]string{"multi_last": subjects})
	if err != nil {
		b.Fatal(err)
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+events.StreamState, inbox, req); err != nil {
		b.Fatal(err)
	}
	seen := 0
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		switch m.Header.Get("Status") {
		case "":
		case "204", "404": // end of the results, or none
			return len(subjects) - seen
		default:
			b.Fatalf("read back: status %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
		}
		if subject := m.Header.Get(jetstream.SubjectHeader); ids[subject] == m.Header.Get(jetstream.MsgIDHeader) {
			seen++
		}
	}
}
