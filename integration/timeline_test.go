//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// placement is where the JetStream cluster keeps its leaders, as the live nodes' monitoring
// endpoints report it: "meta" and each stream's name map to the leading node, and
// "consumer <stream> <name>" to the node hosting that consumer.
type placement map[string][]string

// jsz is the part of a node's /jsz that says who leads what. A group's leader reports since
// when it leads: once elected, a leader takes writes only after applying what the previous
// term committed (nats-server's raft "leader state"), and leader_since is set then.
type jsz struct {
	Meta struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	Accounts []struct {
		Streams []struct {
			Name      string    `json:"name"`
			Cluster   jszLeader `json:"cluster"`
			Consumers []struct {
				Name    string    `json:"name"`
				Cluster jszLeader `json:"cluster"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

type jszLeader struct {
	Leader      string     `json:"leader"`
	LeaderSince *time.Time `json:"leader_since"`
}

// where asks each named node's monitoring endpoint who leads what; a node that does not answer
// is left out.
func (c *cluster) where(nodes ...string) placement {
	p, _ := c.leaders(nodes...)
	return p
}

// leaders is where, with since when each stream's and consumer's leader takes writes, as that
// leader reports it (absent while the leader it names has not reported it).
func (c *cluster) leaders(nodes ...string) (placement, map[string]time.Time) {
	p, since := placement{}, map[string]time.Time{}
	add := func(k, v string) {
		if v != "" && !slices.Contains(p[k], v) {
			p[k] = append(p[k], v)
			slices.Sort(p[k])
		}
	}
	addGroup := func(k, node string, l jszLeader) {
		add(k, l.Leader)
		if l.Leader == node && l.LeaderSince != nil {
			since[k] = *l.LeaderSince
		}
	}
	hc := http.Client{Timeout: time.Second}
	for _, n := range nodes {
		ip, err := c.all[n].ContainerIP(c.ctx)
		if err != nil || ip == "" {
			continue
		}
		resp, err := hc.Get("http://" + ip + ":8222/jsz?accounts=true&streams=true&consumers=true")
		if err != nil {
			continue
		}
		var z jsz
		err = json.NewDecoder(resp.Body).Decode(&z)
		resp.Body.Close()
		if err != nil {
			continue
		}
		add("meta", z.Meta.Leader)
		for _, a := range z.Accounts {
			for _, s := range a.Streams {
				addGroup(s.Name, n, s.Cluster)
				for _, cons := range s.Consumers {
					addGroup("consumer "+s.Name+" "+cons.Name, n, cons.Cluster)
				}
			}
		}
	}
	return p, since
}

// leader is the one node p names for key, or "" while the live nodes disagree or know none.
func (p placement) leader(key string) string {
	if len(p[key]) == 1 {
		return p[key][0]
	}
	return ""
}

// elections records, for each Raft group, each leader the surviving nodes name after a kill,
// when it was first named and when it began to take writes: a group led by the killed node may
// elect one leader that soon gives way to another (a second election, the surviving nodes'
// terms racing), and an elected leader takes writes only once it applied the previous term's.
type elections struct {
	mu      sync.Mutex
	leaders electionLog
	stop    chan struct{}
	done    chan struct{}
}

// leaderSeen is a group's leader, when after the kill the surviving nodes first named it, and
// when it began to take writes (writable; known once the leader reported it).
type leaderSeen struct {
	node     string
	at       time.Duration
	writable time.Duration
	known    bool
}

// watchElections polls the surviving nodes every 100 ms, from the kill at killed, until stop.
func (c *cluster) watchElections(killed time.Time, dead string, groups []string, alive ...string) *elections {
	e := &elections{leaders: electionLog{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			p, since := c.leaders(alive...)
			e.mu.Lock()
			for _, g := range groups {
				// A poll that no node answered names no leader: it is not counted as a change.
				seen := e.leaders[g]
				if l := p.leader(g); l != "" && l != dead && (len(seen) == 0 || seen[len(seen)-1].node != l) {
					seen = append(seen, leaderSeen{node: l, at: time.Since(killed)})
					e.leaders[g] = seen
				}
				if len(seen) > 0 && !seen[len(seen)-1].known && p.leader(g) == seen[len(seen)-1].node {
					if at, ok := since[g]; ok {
						seen[len(seen)-1].writable, seen[len(seen)-1].known = at.Sub(killed), true
					}
				}
			}
			e.mu.Unlock()
			select {
			case <-e.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return e
}

// seen is when each group had a leader again so far (its first since the kill).
func (e *elections) seen() map[string]time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	at := map[string]time.Duration{}
	for g, seen := range e.leaders {
		at[g] = seen[0].at
	}
	return at
}

// end stops the polling and returns each group's leaders in the order seen.
func (e *elections) end() electionLog {
	close(e.stop)
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaders
}

// electionLog is each group's leaders since a kill, in the order seen.
type electionLog map[string][]leaderSeen

// by is since when group g's leader at t (after the kill) took writes: that of the last leader
// named by then, or of the first one when none was; when the leader did not report it, since
// it was first named.
func (l electionLog) by(g string, t time.Duration) time.Duration {
	seen := l[g]
	if len(seen) == 0 {
		return 0
	}
	x := seen[0]
	for _, s := range seen {
		if s.at <= t {
			x = s
		}
	}
	if x.known {
		return x.writable
	}
	return x.at
}

// list names g's leaders, when each was first named and, where it reported it (a stream's or
// consumer's leader; the meta leader does not), since when it takes writes.
func (l electionLog) list(g string) string {
	var s []string
	for _, x := range l[g] {
		line := fmt.Sprintf("%s named at %s", x.node, ms(x.at))
		if x.known {
			line += ", takes writes from " + ms(x.writable)
		}
		s = append(s, line)
	}
	return strings.Join(s, "; ")
}

// wire records, on a core NATS subscription of the operator, when each message on Detour's
// subjects was published, whether or not a stream stored it.
type wire struct {
	mu   sync.Mutex
	seen []sighting
}

type sighting struct {
	at      time.Time
	subject string
	failed  bool   // a probe message holding a failed result of the watched pool
	to      string // a transition's new status
}

// listen subscribes, on the node at url, to the failed probe results of app's pool (from every
// region), to STATE and to the route tables, until the returned stop.
func listen(t *testing.T, url, app, pool string) (w *wire, stop func()) {
	t.Helper()
	w = &wire{}
	nc, err := nats.Connect(url)
	if err != nil {
		fatalf(t, "connect %s: %v", url, err)
	}
	_, err = nc.Subscribe("detour.>", func(m *nats.Msg) {
		s := sighting{at: time.Now(), subject: m.Subject}
		switch {
		case strings.HasPrefix(m.Subject, "detour.probe."):
			if s.failed = failedResult(m.Data, app, pool); !s.failed {
				return
			}
		case strings.HasPrefix(m.Subject, "detour.state."):
			var e struct {
				Data struct {
					To string `json:"to"`
				} `json:"data"`
			}
			_ = json.Unmarshal(m.Data, &e)
			s.to = e.Data.To
		case !strings.HasPrefix(m.Subject, "detour.routes."):
			return
		}
		w.mu.Lock()
		w.seen = append(w.seen, s)
		w.mu.Unlock()
	})
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		fatalf(t, "subscribe: %v", err)
	}
	return w, nc.Close
}

// first is how long after from the first message matching match was seen, and how many were
// from then on; -1 for none.
func (w *wire) first(from time.Time, match func(sighting) bool) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, n := time.Duration(-1), 0
	for _, s := range w.seen {
		if !s.at.Before(from) && match(s) {
			if n == 0 {
				at = s.at.Sub(from)
			}
			n++
		}
	}
	return at, n
}

// failedStored is how long after from PROBES, read at url, stored the first failed result of
// app's pool from region; -1 for none.
func failedStored(url, region, app, pool string, from time.Time) time.Duration {
	js, done, err := jetStreamAt(url)
	if err != nil {
		return -1
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "PROBES", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"detour.probe." + region + ".>"},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return -1
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return -1
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil && failedResult(m.Data(), app, pool) {
				return meta.Timestamp.Sub(from)
			}
		}
		if n == 0 {
			return -1
		}
	}
}

// failedResult reports whether a probe message holds a failed result of app's pool.
func failedResult(b []byte, app, pool string) bool {
	var e struct {
		Data struct {
			App, Pool string
			OK        bool
			Results   []struct {
				App, Pool string
				OK        bool
			}
		}
	}
	if json.Unmarshal(b, &e) != nil {
		return false
	}
	if e.Data.App == app && e.Data.Pool == pool && !e.Data.OK {
		return true
	}
	for _, r := range e.Data.Results {
		if r.App == app && r.Pool == pool && !r.OK {
			return true
		}
	}
	return false
}

// logLine is one line a role logged, as JSON.
type logLine struct {
	Time      time.Time `json:"time"`
	Message   string    `json:"message"`
	Component string    `json:"component"`
	Stream    string    `json:"stream"`
	Subject   string    `json:"subject"`
	StateSeq  uint64    `json:"state_seq"`
	App       string    `json:"app"`
	Error     string    `json:"error"`
	// Bridged is how many messages a follower read by direct get while it had no consumer (-1:
	// it could not read so; absent from other lines).
	Bridged *int64 `json:"bridged"`
	// Bridge is how a follower reads while it has no consumer, or why it cannot ("stream
	// unreachable; retrying" only).
	Bridge string `json:"bridge"`
}

// logged is what role name logged from from on.
func (c *cluster) logged(name string, from time.Time) []logLine {
	r, err := c.all[name].Logs(c.ctx)
	if err != nil {
		return nil
	}
	defer r.Close()
	var out []logLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '{'); i >= 0 {
			line = line[i:]
		}
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && !l.Time.Before(from) {
			out = append(out, l)
		}
	}
	return out
}

// roleLog is what a role logged about its NATS connection, its followed streams and its
// decisions from a second before from on, one "offset message [stream or subject]" per line.
func (c *cluster) roleLog(name string, from time.Time) []string {
	var out []string
	for _, l := range c.logged(name, from.Add(-time.Second)) {
		switch l.Message {
		case "disconnected from nats; serving what this role has", "connected to nats", "stream unreachable; retrying",
			"stream reachable again", "endpoint transition", "pool transition", "append endpoint transition failed, retrying",
			"append pool transition failed, retrying", "zone changed", "route applied",
			"routes not published, retrying",
			"PROBES did not deliver a result in time; folding results as heard on the wire",
			"PROBES delivers again; results are folded as it delivers them":
			line := fmt.Sprintf("%+.3fs %s %s%s", l.Time.Sub(from).Seconds(), l.Message, l.Stream, l.Subject)
			if l.Error != "" {
				line += " (" + l.Error + ")"
			}
			if l.Bridge != "" {
				line += " (bridge: " + l.Bridge + ")"
			}
			if l.Bridged != nil && *l.Bridged >= 0 { // -1: the follower had no bridge
				line += fmt.Sprintf(" (%d read by direct get meanwhile)", *l.Bridged)
			}
			out = append(out, line)
		}
	}
	return out
}

// ms prints a duration after an event, or "never" for -1.
func ms(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// routeDelivery is one route of an edge's app: when the controller computed it (its event's
// time: that of the last attempt, where ROUTES did not take an earlier one), when ROUTES stored
// it and when the edge logged applying it, all after from; applied is -1 while it has not.
type routeDelivery struct {
	stateSeq                  uint64
	computed, stored, applied time.Duration
	// current is when the edge applied this route or a later one of the app (-1: neither yet).
	current time.Duration
}

// routeDeliveries lists the routes of app on edge that ROUTES stored after from, and when the
// edge applied each (it logs "route applied" at debug level).
func (c *cluster) routeDeliveries(url, edge, app string, from time.Time) []routeDelivery {
	js, done, err := jetStreamAt(url)
	if err != nil {
		return nil
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A plain consumer, not an ordered one: an ordered consumer's Fetch re-creates its consumer,
	// without end, while no node can (a JetStream node just killed), and hung the suite.
	cons, err := js.CreateConsumer(ctx, "ROUTES", jetstream.ConsumerConfig{FilterSubject: "detour.routes." + edge + "." + app,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from, AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, MemoryStorage: true})
	if err != nil {
		return nil
	}
	batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return nil
	}
	var out []routeDelivery
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		var e struct {
			Time time.Time `json:"time"`
			Data struct {
				StateSeq uint64 `json:"state_seq"`
			} `json:"data"`
		}
		if err != nil || json.Unmarshal(m.Data(), &e) != nil {
			continue
		}
		out = append(out, routeDelivery{stateSeq: e.Data.StateSeq, computed: e.Time.Sub(from), stored: meta.Timestamp.Sub(from), applied: -1})
	}
	for _, l := range c.logged(edge, from) {
		for i := range out {
			if l.Message == "route applied" && l.App == app && l.StateSeq == out[i].stateSeq && out[i].applied < 0 {
				out[i].applied = l.Time.Sub(from)
			}
		}
	}
	for i := range out {
		out[i].current = -1
		for _, later := range out[i:] {
			if later.applied >= 0 && (out[i].current < 0 || later.applied < out[i].current) {
				out[i].current = later.applied
			}
		}
	}
	return out
}

// convergedRoutes is routeDeliveries once the edge applied each route or a later one, read again
// until it did, for up to 10 s after the last route was stored (what is still not applied then
// is left at -1, for the caller to report) or 30 s in all.
func (c *cluster) convergedRoutes(url, edge, app string, from time.Time) []routeDelivery {
	var out []routeDelivery
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r := c.routeDeliveries(url, edge, app, from); len(r) > 0 {
			out = r
		}
		if len(out) > 0 && (out[len(out)-1].current >= 0 || time.Since(from) > out[len(out)-1].stored+10*time.Second) {
			break
		}
	}
	return out
}
