package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats-server/v2/server"
)

// natsMonitorPort is where the benchmark's NATS serves its monitoring endpoints, in the
// benchmark's own network namespace.
const natsMonitorPort = 8222

// counted is what NATS carried for one client connection, or for all of them.
type counted struct{ inMsgs, outMsgs, inBytes, outBytes int64 }

func (c counted) minus(o counted) counted {
	return counted{c.inMsgs - o.inMsgs, c.outMsgs - o.outMsgs, c.inBytes - o.inBytes, c.outBytes - o.outBytes}
}

// traffic is what NATS carried in one phase: the messages each client connection published (in)
// and received (out), by its id, with the name it connected with, and the messages each stream
// stored.
type traffic struct {
	conns   map[uint64]counted
	names   map[uint64]string
	streams map[string]uint64
}

// trafficStreams are the streams whose stored messages a phase counts.
var trafficStreams = []string{events.StreamProbes, events.StreamState, events.StreamRoutes, events.StreamDNS}

// natsTraffic reads what NATS carried so far: every open connection's counts from /connz, and
// each stream's last sequence.
func (st *stack) natsTraffic(ctx context.Context) (traffic, error) {
	t := traffic{conns: map[uint64]counted{}, names: map[uint64]string{}, streams: map[string]uint64{}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/connz?limit=4096", natsMonitorPort), nil)
	if err != nil {
		return t, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return t, fmt.Errorf("read nats connections: %w", err)
	}
	defer resp.Body.Close()
	var cz server.Connz
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return t, fmt.Errorf("decode nats connections: %w", err)
	}
	for _, c := range cz.Conns {
		t.conns[c.Cid] = counted{c.InMsgs, c.OutMsgs, c.InBytes, c.OutBytes}
		t.names[c.Cid] = cmp.Or(c.Name, fmt.Sprintf("cid %d", c.Cid))
	}
	for _, s := range trafficStreams {
		t.streams[s] = st.lastSeq(ctx, s)
	}
	return t, nil
}

// since is what NATS carried between t0 and t, per connection open at t (one opened in between,
// a client's reconnection, counts whole; what one closed in between carried is not counted).
func (t traffic) since(t0 traffic) traffic {
	d := traffic{conns: map[uint64]counted{}, names: t.names, streams: map[string]uint64{}}
	for k, c := range t.conns {
		d.conns[k] = c.minus(t0.conns[k])
	}
	for k, n := range t.streams {
		d.streams[k] = n - t0.streams[k]
	}
	return d
}

// String prints the phase's traffic: messages stored per stream, then in and out per client
// (its connections summed by name), busiest first, with the totals.
func (t traffic) String() string {
	byName := map[string]counted{}
	for k, c := range t.conns {
		sum := byName[t.names[k]]
		sum.inMsgs, sum.outMsgs = sum.inMsgs+c.inMsgs, sum.outMsgs+c.outMsgs
		sum.inBytes, sum.outBytes = sum.inBytes+c.inBytes, sum.outBytes+c.outBytes
		byName[t.names[k]] = sum
	}
	var b strings.Builder
	b.WriteString("  NATS in the storm: stored")
	for _, s := range trafficStreams {
		fmt.Fprintf(&b, " %s %d", s, t.streams[s])
	}
	names := slices.Collect(maps.Keys(byName))
	slices.SortFunc(names, func(a, b string) int {
		ca, cb := byName[a], byName[b]
		return int((cb.inMsgs + cb.outMsgs) - (ca.inMsgs + ca.outMsgs))
	})
	var all counted
	for _, k := range names {
		c := byName[k]
		all.inMsgs, all.outMsgs = all.inMsgs+c.inMsgs, all.outMsgs+c.outMsgs
		all.inBytes, all.outBytes = all.inBytes+c.inBytes, all.outBytes+c.outBytes
	}
	fmt.Fprintf(&b, "; clients published %d messages (%.1f MiB) and received %d (%.1f MiB)\n",
		all.inMsgs, float64(all.inBytes)/(1<<20), all.outMsgs, float64(all.outBytes)/(1<<20))
	b.WriteString("    per client, published / received messages (MiB):")
	for _, k := range names {
		c := byName[k]
		fmt.Fprintf(&b, " %s %d / %d (%.1f / %.1f);", k, c.inMsgs, c.outMsgs, float64(c.inBytes)/(1<<20), float64(c.outBytes)/(1<<20))
	}
	return strings.TrimSuffix(b.String(), ";") + "\n"
}
