//go:build integration && soak

package integration

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

// The soak's schedule: backend-west flips between dead and alive every flapEvery; every
// killEvery a role or JetStream node, drawn at random among those not killed yet, is killed
// killAt into the minute and started again killFor later.
const (
	flapEvery = 20 * time.Second
	killEvery = time.Minute
	killAt    = 30 * time.Second
	killFor   = 15 * time.Second
	// recovery is how long a restarted container may take to be back: an edge's requests
	// failing, or its down transition stored, that long after its restart are its kill's.
	recovery = 5 * time.Second
)

// victims are the containers the soak kills, one at a time.
var victims = []string{"decider-1", "decider-2", "dns-1", "dns-2", "edge-west", "edge-east",
	"prober-west", "prober-east", "controller", "nats-1", "nats-2", "nats-3"}

// TestSoak runs the chaos cluster (with a second DNS server) for DETOUR_SOAK_DURATION (default
// 10m) while DNS queries to both servers and requests through both edges run every 50 ms,
// backend-west flaps every 20 s and a random role or JetStream node is killed and restarted every
// minute (DETOUR_SOAK_SEED repeats a draw). It then holds STATE against the flap schedule and
// the kills: every flap is recorded once for each us-west endpoint and pool (lost and duplicate
// transitions: 0), nothing else changes but the killed edges (false transitions: 0), and each DNS
// server's answer follows each flap (the worst failover time is printed). `go tool task soak`.
func TestSoak(t *testing.T) {
	duration := 10 * time.Minute
	if v := os.Getenv("DETOUR_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < killEvery {
			fatalf(t, "DETOUR_SOAK_DURATION: want a duration of at least %s, got %q", killEvery, v)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("DETOUR_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fatalf(t, "DETOUR_SOAK_SEED: want an unsigned integer, got %q", v)
		}
		seed = n
	}
	rnd := rand.New(rand.NewPCG(seed, seed))

	c := newEdgeCluster(t)
	dns2 := c.prefix + ".54"
	c.runAt(dns2, "dns-2", nil, []string{"dns", "--name", "dns-2", "--addr", "0.0.0.0:53", "--data-dir", "/var/lib/detour/dns",
		"--nats", c.natsURL("dns-2"), "--log-format", "json"}, nil, nil, nil)
	servers := map[string]string{"dns-1": c.dns + ":53", "dns-2": dns2 + ":53"}
	eventually(t, 90*time.Second, func() bool {
		return c.shop() == c.west && strings.Join(answer(servers["dns-2"], "shop.demo.test"), " ") == c.west &&
			c.throughWest() == "us-west"
	}, "both DNS servers answer shop with us-west and edge-west serves it")
	op := c.operator("nats-1")
	before := len(c.allUp(op))

	answers := map[string]*series{}
	for name, addr := range servers {
		answers[name] = record(func() string { return strings.Join(answer(addr, "shop.demo.test"), " ") })
	}
	for name, ip := range map[string]string{"edge-west": c.edgeWest, "edge-east": c.edgeEast} {
		answers[name] = record(func() string { return get("http://" + ip + ":8080/") })
	}
	defer func() {
		for _, s := range answers {
			s.end()
		}
	}()

	start := time.Now()
	end := start.Add(duration)
	t.Logf("soak: %s from %s, seed %d (DETOUR_SOAK_SEED repeats the draw)", duration, start.Format("15:04:05"), seed)
	var flaps []flap
	var kills []kill
	down := false
	nextFlap, nextKill := start.Add(flapEvery), start.Add(killAt)
	var killed *kill
	var order []string
	for {
		at := nextFlap
		if nextKill.Before(at) {
			at = nextKill
		}
		if killed != nil && killed.Killed.Add(killFor).Before(at) {
			at = killed.Killed.Add(killFor)
		}
		if !at.Before(end) && killed == nil && !down {
			break
		}
		time.Sleep(time.Until(at))
		switch {
		case killed != nil && !time.Now().Before(killed.Killed.Add(killFor)):
			c.start(killed.Name)
			killed.Started = time.Now()
			kills = append(kills, *killed)
			t.Logf("soak: %s started again", killed.Name)
			killed = nil
		case !time.Now().Before(nextFlap):
			if down {
				c.start("backend-west")
			} else {
				c.kill("backend-west")
			}
			down = !down
			flaps = append(flaps, flap{At: time.Now(), Down: down})
			nextFlap = nextFlap.Add(flapEvery)
			if !nextFlap.Before(end) && !down {
				nextFlap = end.Add(time.Hour) // the last flap brought the backend back
			}
		case !time.Now().Before(nextKill):
			nextKill = nextKill.Add(killEvery)
			if !nextKill.Add(killFor).Before(end) {
				nextKill = end.Add(time.Hour)
			}
			if len(order) == 0 { // every victim once, in a random order, then again
				order = slices.Clone(victims)
				rnd.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			}
			name := order[0]
			order = order[1:]
			c.kill(name)
			killed = &kill{Name: name, Killed: time.Now()}
			t.Logf("soak: %s killed", name)
		}
	}
	// The last change settles before STATE is read.
	settled := time.Now().Add(checkInterval*checkFall + 10*time.Second)
	time.Sleep(time.Until(settled))
	for _, s := range answers {
		s.end()
	}

	log := stateLog(t, op, "detour.state.>")[before:]
	r := judge(log, flaps, kills, c.west, c.east, answers)
	var names []string
	for _, k := range kills {
		names = append(names, k.Name+" "+k.Killed.Format("15:04:05"))
	}
	t.Logf("soak: %d flaps of backend-west; %d kills: %s", len(flaps), len(kills), strings.Join(names, ", "))
	t.Logf("soak: %d transitions in STATE during the soak", len(log))
	for _, line := range r.notes {
		t.Logf("soak: %s", line)
	}
	t.Logf("soak: lost events %d, duplicate transitions %d, false transitions %d, flaps a live DNS server never answered %d",
		r.lost, r.duplicate, r.false, r.missed)
	t.Logf("soak: failover (flap → DNS answer moved): worst %s (%s), median %s over %d flap × server (%d not timed: the server was killed)",
		r.worst.Round(time.Millisecond), r.worstAt, r.median.Round(time.Millisecond), r.measured, r.untimed)
	for _, e := range []string{"edge-west", "edge-east"} {
		t.Logf("soak: %s: %d requests, %d failed outside its own kills", e, r.requests[e], r.failed[e])
	}
	for bound, n := range map[string]int{"lost events": r.lost, "duplicate transitions": r.duplicate,
		"false transitions": r.false, "flaps a live DNS server never answered": r.missed} {
		if n > 0 {
			errorf(t, "soak: %s: %d, want 0", bound, n)
		}
	}
}

// flap is backend-west killed (Down) or started again, at At.
type flap struct {
	At   time.Time
	Down bool
}

// kill is a container killed and started again.
type kill struct {
	Name            string
	Killed, Started time.Time
}

// sample is one answer and when it was asked for.
type sample struct {
	At     time.Time
	Answer string
}

// series asks every 50 ms until end and keeps every answer.
type series struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func record(ask func() string) *series {
	s := &series{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			at := time.Now()
			got := ask()
			s.mu.Lock()
			s.samples = append(s.samples, sample{at, got})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *series) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// verdict is what the soak measured.
type verdict struct {
	lost, duplicate, false, missed int
	worst, median                  time.Duration
	worstAt                        string
	measured, untimed              int
	requests, failed               map[string]int
	notes                          []string
}

// judge holds the transitions STATE recorded during the soak against the flaps and kills, and
// the answers against the flaps.
func judge(log []stateEvent, flaps []flap, kills []kill, west, east string, answers map[string]*series) verdict {
	v := verdict{requests: map[string]int{}, failed: map[string]int{}}
	bySubject := map[string][]stateEvent{}
	var subjects []string
	for _, e := range log {
		if _, ok := bySubject[e.Subject]; !ok {
			subjects = append(subjects, e.Subject)
		}
		bySubject[e.Subject] = append(bySubject[e.Subject], e)
	}
	// us-west's endpoints and pools: each flap recorded exactly once, before the next flap.
	var flapped []string
	for _, app := range []string{"shop", "shop-edge"} {
		flapped = append(flapped, events.PoolStateSubject(app, "us-west"),
			events.EndpointStateSubject(app, "us-west", events.AddressToken(west+":8081")))
	}
	for _, s := range flapped {
		seen := make([]int, len(flaps))
		for _, e := range bySubject[s] {
			w := flapBefore(flaps, e.Stored)
			want := "up"
			if w >= 0 && flaps[w].Down {
				want = "down"
			}
			switch {
			case w < 0 || e.To != want:
				v.false++
				v.notes = append(v.notes, "false transition: "+s+" → "+e.To+" at "+e.Stored.Format("15:04:05.000"))
			case seen[w] > 0:
				v.duplicate++
				v.notes = append(v.notes, "duplicate transition: "+s+" → "+e.To+" at "+e.Stored.Format("15:04:05.000"))
			default:
				seen[w]++
			}
		}
		for w, n := range seen {
			if n == 0 {
				v.lost++
				v.notes = append(v.notes, "lost event: "+s+" never recorded the flap at "+flaps[w].At.Format("15:04:05.000"))
			}
		}
	}
	// The edges change only when killed: down after the kill, up after the restart.
	for _, s := range subjects {
		if slices.Contains(flapped, s) {
			continue
		}
		edge, isEdge := strings.CutPrefix(s, "detour.state.edge.")
		prev := ""
		for _, e := range bySubject[s] {
			explained := false
			for _, k := range kills {
				if isEdge && k.Name == edge && !e.Stored.Before(k.Killed) &&
					((e.To == "down" && e.Stored.Before(k.Started.Add(recovery))) || (e.To == "up" && e.Stored.After(k.Started))) {
					explained = true
				}
			}
			switch {
			case e.To == prev:
				v.duplicate++
				v.notes = append(v.notes, "duplicate transition: "+s+" → "+e.To+" at "+e.Stored.Format("15:04:05.000"))
			case !explained:
				v.false++
				v.notes = append(v.notes, "false transition: "+s+" → "+e.To+" at "+e.Stored.Format("15:04:05.000"))
			}
			prev = e.To
		}
	}
	// Failover: per flap and DNS server, from the flap to the first answer that followed it;
	// a server killed at the flap is not timed (it answers nothing until it is back).
	during := func(name string, at time.Time) string {
		for _, k := range kills {
			if (name == "" || k.Name == name) && !at.Before(k.Killed) && at.Before(k.Started.Add(recovery)) {
				return k.Name
			}
		}
		return ""
	}
	var times []time.Duration
	for _, name := range []string{"dns-1", "dns-2"} {
		samples := answers[name].samples
		for w, f := range flaps {
			if during(name, f.At) != "" {
				v.untimed++
				continue
			}
			want := west
			if f.Down {
				want = east
			}
			answered, moved := false, false
			for _, s := range samples {
				if s.At.Before(f.At) || flapBefore(flaps, s.At) != w {
					continue
				}
				if !strings.HasPrefix(s.Answer, "error") {
					answered = true
				}
				if s.Answer == want {
					d := s.At.Sub(f.At)
					times = append(times, d)
					if d > v.worst {
						v.worst, v.worstAt = d, name+", flap at "+f.At.Format("15:04:05")
						if k := during("", f.At); k != "" {
							v.worstAt += ", " + k + " killed"
						}
					}
					moved = true
					break
				}
			}
			if answered && !moved {
				v.missed++
				v.notes = append(v.notes, name+" never answered "+want+" after the flap at "+f.At.Format("15:04:05.000"))
			}
		}
	}
	slices.Sort(times)
	v.measured = len(times)
	if len(times) > 0 {
		v.median = times[len(times)/2]
	}
	// Requests through the edges: each backend's name is a success; an edge's own kill excused.
	for _, e := range []string{"edge-west", "edge-east"} {
		for _, s := range answers[e].samples {
			v.requests[e]++
			if s.Answer == "us-west" || s.Answer == "us-east" {
				continue
			}
			excused := false
			for _, k := range kills {
				if k.Name == e && !s.At.Before(k.Killed) && s.At.Before(k.Started.Add(recovery)) {
					excused = true
				}
			}
			if !excused {
				v.failed[e]++
			}
		}
	}
	return v
}

// flapBefore returns the index of the last flap at or before at, or -1.
func flapBefore(flaps []flap, at time.Time) int {
	i, _ := slices.BinarySearchFunc(flaps, at, func(f flap, at time.Time) int { return f.At.Compare(at) })
	if i < len(flaps) && flaps[i].At.Equal(at) {
		return i
	}
	return i - 1
}
