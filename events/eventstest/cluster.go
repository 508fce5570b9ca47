package eventstest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of nats-server nodes in process on loopback, whose routes and
// client connections all pass through relays the test controls, so that a node can be made to
// hang (Silence) as a stalled or partitioned node does: its connections stay open and carry
// nothing.
type Cluster struct {
	Servers []*server.Server
	// URLs are the nodes' client URLs, each through its node's relay.
	URLs []string

	mu     sync.Mutex
	cond   *sync.Cond
	silent []bool
	// cut are the pairs of nodes whose routes to each other stall (see Cut), lower index first.
	cut map[[2]int]bool
	// lag delays what the routes of the global account carry (see Lag).
	lag    time.Duration
	closed bool
	// client and route are the nodes' own listen addresses, once they listen.
	client, route []string
}

// StartCluster runs n JetStream nodes (named n0, n1, …) with their stores in temporary
// directories, each routed to every other through a relay per ordered pair, and waits until the
// meta leader counts every node online, so that a stream of n replicas can be placed. Clients
// must connect through URLs: the nodes do not advertise their own addresses, to clients or to
// each other. Everything stops when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{silent: make([]bool, n), cut: map[[2]int]bool{}, client: make([]string, n), route: make([]string, n)}
	c.cond = sync.NewCond(&c.mu)
	// A closed port, refused at once: gossip carries it instead of a node's own cluster address,
	// so that no node connects to another behind the relays' backs. It is closed once the relays
	// and nodes hold their own ports, so that none of them is given it.
	nowhere := listen(tb)
	for i := range n {
		c.URLs = append(c.URLs, "nats://"+c.relay(tb, i, false, i))
	}
	for i := range n {
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, "nats://"+c.relay(tb, j, true, i, j))
			}
		}
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
			NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: -1, NoAdvertise: true,
				Advertise: nowhere.Addr().String()},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		ns, err := server.NewServer(o)
		if err != nil {
			tb.Fatalf("new nats server n%d: %v", i, err)
		}
		ns.Start()
		tb.Cleanup(ns.Shutdown)
		c.Servers = append(c.Servers, ns)
	}
	_ = nowhere.Close()
	for i, ns := range c.Servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("nats server n%d did not become ready in 10s", i)
		}
		c.mu.Lock()
		c.client[i], c.route[i] = ns.Addr().String(), ns.ClusterAddr().String()
		c.cond.Broadcast()
		c.mu.Unlock()
	}
	// Relays close first, so that a silenced node does not hold the others' shutdown.
	tb.Cleanup(func() {
		c.mu.Lock()
		c.closed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	Eventually(tb, 20*time.Second, func() bool {
		for _, ns := range c.Servers {
			if !ns.JetStreamIsLeader() {
				continue
			}
			jsz, err := ns.Jsz(nil)
			if err != nil || jsz.Meta == nil || len(jsz.Meta.Replicas) != n-1 {
				return false
			}
			for _, p := range jsz.Meta.Replicas {
				if !p.Current || p.Offline {
					return false
				}
			}
			return true
		}
		return false
	}, "a JetStream meta leader that counts all %d nodes online and current", n)
	return c
}

// Silence stalls every connection of node i, its routes and its clients': nothing more is
// forwarded either way, and nothing is closed. It lasts until the test ends.
func (c *Cluster) Silence(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.silent[i] = true
}

// Cut stalls the routes between nodes i and j, both ways, as a partition between two nodes
// does: every other route and every client connection, theirs included, carries on. A replica
// on i or j whose stream the other leads falls behind it, and still answers direct gets sent by
// way of the third node. It lasts until the test ends.
func (c *Cluster) Cut(i, j int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[[2]int{min(i, j), max(i, j)}] = true
}

// Lag delays by d everything the routes carry for the global account, the one the tests' clients
// use (the nodes configure no accounts), and nothing they carry for the system account: the
// JetStream API's answers and the cluster's metadata go on at once. nats-server sends an
// account's traffic on one connection of a pool of routes between two nodes (the account's pool
// index, computeRoutePoolIdx in its route.go), the system account's on another, and a busy or
// distant link may deliver the two in either order; this one does, by d. It applies to
// connections opened since as well as before, and lasts until the test ends.
func (c *Cluster) Lag(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lag = d
}

// routePoolSize is the nodes' route pool size, nats-server's default.
const routePoolSize = 3

// globalPool is the index, in the pool of routes between two nodes, of the connection that
// carries the global account's traffic: nats-server's computeRoutePoolIdx of "$G".
var globalPool = func() int {
	h := fnv.New32a()
	h.Write([]byte("$G"))
	return int(h.Sum32() % routePoolSize)
}()

// poolIndex finds the route pool index in the INFO a node that dials a route sends (the other
// side's INFO has none); nats-server leaves out an index of 0.
var poolIndex = regexp.MustCompile(`"route_pool_idx":(\d+)`)

// Streams creates Detour's streams, three replicas each in memory, through node 0, trying again
// while the new cluster elects their leaders, and returns node 0's JetStream.
func (c *Cluster) Streams(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	_, js := ConnectJS(tb, c.URLs[0])
	var err error
	Eventually(tb, 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: 3, Memory: true})
		return err == nil
	}, "the streams created: %v", &err)
	return js
}

// Replicas names the nodes of st's three replicas, to set one against the others: the stream's
// leader, a follower that does not lead the cluster's metadata either (one to hang or to cut from
// the leader without an election), and the third.
func (c *Cluster) Replicas(tb testing.TB, st jetstream.Stream) (leader, follower, third int) {
	tb.Helper()
	leader, follower, third, _ = c.ReplicasOutside(tb, st)
	return leader, follower, third
}

// ReplicasOutside is Replicas, and, in a cluster of four, the node that holds no replica of st
// (-1 in one of three): a client there has its direct gets answered by any of the three.
func (c *Cluster) ReplicasOutside(tb testing.TB, st jetstream.Stream) (leader, follower, third, outside int) {
	tb.Helper()
	// A stream just created may not answer its first info request while its replicas settle on
	// a leader (CI once waited out 5 s for it): it is asked again.
	var info *jetstream.StreamInfo
	var err error
	Eventually(tb, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err = st.Info(ctx)
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, "stream info naming a leader: %v", &err)
	replica := map[string]bool{}
	for _, p := range info.Cluster.Replicas {
		replica[p.Name] = true
	}
	leader, follower, third, outside = -1, -1, -1, -1
	for i, ns := range c.Servers {
		switch {
		case ns.Name() == info.Cluster.Leader:
			leader = i
		case !replica[ns.Name()]:
			outside = i
		case follower < 0 && !ns.JetStreamIsLeader():
			follower = i
		default:
			third = i
		}
	}
	if leader < 0 || follower < 0 || third < 0 {
		tb.Fatalf("stream %s led by %q: no follower to set against it", info.Config.Name, info.Cluster.Leader)
	}
	return leader, follower, third, outside
}

// LeadingNone returns a node that leads neither the named streams nor the cluster's metadata,
// moving their leaders off it through js as needed: one to hang while the others keep every
// stream a test reads led.
func (c *Cluster) LeadingNone(tb testing.TB, js jetstream.JetStream, streams ...string) int {
	tb.Helper()
	node := -1
	for i, ns := range c.Servers {
		if !ns.JetStreamIsLeader() {
			node = i
		}
	}
	other := c.Servers[(node+1)%len(c.Servers)].Name()
	for _, name := range streams {
		Eventually(tb, 30*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			if led := st.CachedInfo().Cluster.Leader; led != "" && led != c.Servers[node].Name() {
				return true
			}
			req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, other)
			_, _ = js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, []byte(req))
			return false
		}, "%s led by a node other than n%d", name, node)
	}
	if c.Servers[node].JetStreamIsLeader() {
		tb.Fatalf("n%d leads the cluster's metadata", node)
	}
	return node
}

// LeftOn runs roles named role-0, role-1, … one at a time with every node awake, each through
// run until its consumer of st (events.ConsumerName(user, reader)) is placed, then stops it, until
// n of them have left that consumer on node hung; it returns their names, 100 tried at most. Run
// again once hung is silenced, each finds its last consumer on the hung node.
func (c *Cluster) LeftOn(tb testing.TB, hung, n int, st jetstream.Stream, role, reader string, run func(user string) (stop func())) []string {
	tb.Helper()
	stream := st.CachedInfo().Config.Name
	var users []string
	for i := 0; len(users) < n; i++ {
		if i == 100 {
			tb.Fatalf("%d of 100 %ss' %s consumers placed on n%d", len(users), role, stream, hung)
		}
		user := fmt.Sprintf("%s-%d", role, i)
		stop := run(user)
		var placed string
		Eventually(tb, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			cons, err := st.Consumer(ctx, events.ConsumerName(user, reader))
			if err != nil || cons.CachedInfo().Cluster == nil || cons.CachedInfo().Cluster.Leader == "" {
				return false
			}
			placed = cons.CachedInfo().Cluster.Leader
			return true
		}, "%s's %s consumer placed with every node awake", user, stream)
		stop()
		if placed == c.Servers[hung].Name() {
			users = append(users, user)
		}
	}
	return users
}

// DirectGets waits until every node knows the direct gets of all three replicas of the named
// stream, so that a read sent through any node may be answered by any of them. A follower takes
// them once it holds what the leader committed (checked every 2 s): wait after storing what the
// test reads.
func (c *Cluster) DirectGets(tb testing.TB, stream string) {
	tb.Helper()
	direct := "$JS.API.DIRECT.GET." + stream
	for i := range c.Servers {
		Eventually(tb, 5*time.Second, func() bool { return c.Knows(i, direct) == 3 && c.Knows(i, direct+".>") == 3 },
			"node %d knowing the direct gets of all three replicas of %s", i, stream)
	}
}

// Held returns how many messages node i's replica of the named stream holds: 0 when it holds
// none or cannot say.
func (c *Cluster) Held(i int, stream string) uint64 {
	jsz, err := c.Servers[i].Jsz(&server.JSzOptions{Streams: true})
	if err != nil {
		return 0
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == stream {
				return s.State.Msgs
			}
		}
	}
	return 0
}

// Knows returns how many nodes node i knows to subscribe to subject (exactly that subject, say
// "$JS.API.DIRECT.GET.S" for the direct gets of stream S), itself included: how many places a
// request there may be sent to.
func (c *Cluster) Knows(i int, subject string) int {
	ns := c.Servers[i]
	nodes := map[string]bool{}
	if sz, err := ns.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 1 << 16}); err == nil {
		for _, d := range sz.Subs {
			nodes[ns.Name()] = nodes[ns.Name()] || d.Subject == subject
		}
	}
	if rz, err := ns.Routez(&server.RoutezOptions{SubscriptionsDetail: true}); err == nil {
		for _, r := range rz.Routes {
			for _, d := range r.SubsDetail {
				nodes[r.RemoteName] = nodes[r.RemoteName] || d.Subject == subject
			}
		}
	}
	n := 0
	for _, knows := range nodes {
		if knows {
			n++
		}
	}
	return n
}

// relay listens on loopback and forwards each connection to node to's route port (or client
// port), stalling while any of the nodes ends is silenced, or the two ends of a route are cut
// from each other. It returns the address it listens on.
func (c *Cluster) relay(tb testing.TB, to int, route bool, ends ...int) string {
	ln := listen(tb)
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go c.forward(in, to, route, ends)
		}
	}()
	return ln.Addr().String()
}

func (c *Cluster) forward(in net.Conn, to int, route bool, ends []int) {
	defer in.Close()
	c.mu.Lock()
	for !c.closed && (route && c.route[to] == "" || !route && c.client[to] == "") {
		c.cond.Wait()
	}
	addr := c.client[to]
	if route {
		addr = c.route[to]
	}
	c.mu.Unlock()
	out, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer out.Close()
	// global is set once the dialling node's INFO says the route is the global account's.
	var global atomic.Bool
	done := make(chan struct{}, 2)
	go func() { c.pipe(out, in, ends, route, &global); done <- struct{}{} }()
	go func() { c.pipe(in, out, ends, false, &global); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst, holding what it read while any of ends is silenced, and for Lag while
// global is set, until either fails or the relays close. A pipe from a node dialling a route
// (sniff) reads the route's pool index from its first INFO and sets global.
func (c *Cluster) pipe(dst io.Writer, src io.Reader, ends []int, sniff bool, global *atomic.Bool) {
	buf := make([]byte, 32<<10)
	var head []byte
	// delayed, once the route lags, takes each read with the time it was read to a goroutine that
	// writes it lag later, so that reads go on meanwhile and a burst is not delayed more and more.
	var delayed chan lagged
	defer func() {
		if delayed != nil {
			close(delayed)
		}
	}()
	for {
		n, err := src.Read(buf)
		if n > 0 {
			read := time.Now()
			if sniff {
				head = append(head, buf[:n]...)
				if i := bytes.Index(head, []byte("INFO ")); i >= 0 && bytes.Contains(head[i:], []byte("\r\n")) || len(head) > 64<<10 {
					idx := 0
					if m := poolIndex.FindSubmatch(head); m != nil {
						idx, _ = strconv.Atoi(string(m[1]))
					}
					global.Store(idx == globalPool)
					sniff, head = false, nil
				}
			}
			c.mu.Lock()
			for !c.closed && c.anySilent(ends) {
				c.cond.Wait()
			}
			closed, lag := c.closed, c.lag
			c.mu.Unlock()
			if closed {
				return
			}
			if delayed == nil && lag > 0 && global.Load() {
				delayed = make(chan lagged, 4096)
				go delay(dst, delayed, lag)
			}
			if delayed != nil {
				delayed <- lagged{bytes.Clone(buf[:n]), read}
			} else if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// lagged is what a lagging route read, and when.
type lagged struct {
	data []byte
	read time.Time
}

// delay writes each of reads to dst lag after it was read, until reads is closed; after a failed
// write it drops the rest.
func delay(dst io.Writer, reads <-chan lagged, lag time.Duration) {
	failed := false
	for r := range reads {
		if failed {
			continue
		}
		time.Sleep(time.Until(r.read.Add(lag)))
		_, err := dst.Write(r.data)
		failed = err != nil
	}
}

func (c *Cluster) anySilent(ends []int) bool {
	for _, i := range ends {
		if c.silent[i] {
			return true
		}
	}
	return len(ends) == 2 && c.cut[[2]int{min(ends[0], ends[1]), max(ends[0], ends[1])}]
}

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}
