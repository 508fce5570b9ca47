package route

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events"
)

// route builds an app route from a compact notation: one letter per endpoint, U up, D down,
// ? unknown, R drained; the endpoint at index i is "e<i>" at 10.0.0.<i>:80.
func route(statuses string, available bool, secondary events.Status) *events.AppRoute {
	r := &events.AppRoute{App: "shop", Pool: "p", Available: available}
	for i, s := range statuses {
		st := map[rune]events.Status{'U': events.StatusUp, 'D': events.StatusDown, '?': events.StatusUnknown, 'R': events.StatusDrained}[s]
		r.Endpoints = append(r.Endpoints, events.RouteEndpoint{Name: "e" + string(rune('0'+i)), Address: "10.0.0." + string(rune('0'+i)) + ":80", Status: st, Weight: 1})
	}
	if secondary != "-" {
		r.Secondary = &events.SecondaryRoute{Edge: "east", Hostname: "east.demo.test.", Port: 9090, Status: secondary}
	}
	return r
}

// names renders a plan compactly: endpoint names, and "S" for the secondary.
func names(ts []Target) string {
	var b []string
	for _, t := range ts {
		if t.Secondary {
			b = append(b, "S")
		} else {
			b = append(b, t.Endpoint)
		}
	}
	return strings.Join(b, ",")
}

func TestPlan(t *testing.T) {
	skip := func(addrs ...string) func(string) bool {
		return func(a string) bool {
			for _, s := range addrs {
				if s == a {
					return true
				}
			}
			return false
		}
	}
	alive := Choice{SecondaryAddr: "10.1.0.1:9090", SecondaryAlive: true}
	tests := []struct {
		name  string
		route *events.AppRoute
		c     Choice
		want  string
	}{
		{name: "healthy instances come first and the secondary is the retry", route: route("UUU", true, events.StatusUp), c: alive, want: "e0,e1,e2,S"},
		{name: "the turn rotates the first instance", route: route("UUU", true, events.StatusUp), c: Choice{Turn: 4, SecondaryAddr: "x:1", SecondaryAlive: true}, want: "e1,e2,e0,S"},
		{name: "down and drained instances are skipped", route: route("DUR?", true, "-"), c: alive, want: "e1,e3"},
		{name: "an ejected instance is skipped", route: route("UUU", true, "-"), c: Choice{Skip: skip("10.0.0.0:80")}, want: "e1,e2"},
		{name: "when every serving instance is ejected they are tried anyway", route: route("UUD", true, "-"), c: Choice{Skip: skip("10.0.0.0:80", "10.0.0.1:80")}, want: "e0,e1"},
		{name: "when every serving instance is ejected the secondary comes first", route: route("UUD", true, events.StatusUp), c: Choice{Skip: skip("10.0.0.0:80", "10.0.0.1:80"), SecondaryAddr: "x:1", SecondaryAlive: true}, want: "S,e0,e1"},
		{name: "a down pool sends to the secondary first", route: route("DUD", false, events.StatusUp), c: alive, want: "S,e1"},
		{name: "a down pool with nothing serving goes to the secondary only", route: route("DD", false, events.StatusUnknown), c: alive, want: "S"},
		{name: "a forwarded request never goes to the secondary", route: route("DD", false, events.StatusUp), c: Choice{SecondaryAddr: "x:1", SecondaryAlive: true, Forwarded: true}, want: "e0,e1"},
		{name: "a secondary the controller marked down but the heartbeat reaches comes after healthy instances", route: route("UU", true, events.StatusDown), c: alive, want: "e0,e1,S"},
		{name: "even when the pool is down", route: route("DUD", false, events.StatusDown), c: alive, want: "e1,S"},
		{name: "it comes first when every serving instance is ejected", route: route("UD", true, events.StatusDown), c: Choice{Skip: skip("10.0.0.0:80"), SecondaryAddr: "x:1", SecondaryAlive: true}, want: "S,e0"},
		{name: "and then every instance is tried after it (fail open)", route: route("DD", false, events.StatusDown), c: alive, want: "S,e0,e1"},
		{name: "a secondary the direct heartbeat lost is only the last resort", route: route("UD", true, events.StatusUp), c: Choice{SecondaryAddr: "x:1"}, want: "e0,S"},
		{name: "even when every instance is ejected or down", route: route("UD", false, events.StatusUp), c: Choice{Skip: skip("10.0.0.0:80"), SecondaryAddr: "x:1"}, want: "e0,S"},
		{name: "and when nothing serves, after every instance (fail open)", route: route("DD", false, events.StatusDown), c: Choice{SecondaryAddr: "x:1"}, want: "e0,e1,S"},
		{name: "an unresolved secondary is not used", route: route("UD", true, events.StatusUp), c: Choice{SecondaryAlive: true}, want: "e0"},
		{name: "with no way out every instance is tried (fail open)", route: route("DRD", false, "-"), want: "e0,e1,e2"},
		{name: "a pool without instances and without a secondary has no plan", route: route("", false, "-"), want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(Plan(tt.route, tt.c)); got != tt.want {
				t.Errorf("plan = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPlanSpreadsTurnsByWeight(t *testing.T) {
	r := route("UUU", true, "-")
	r.Endpoints[1].Weight = 3
	r.Endpoints[2].Weight = 0
	first := map[string]int{}
	for turn := range uint64(400) {
		first[Plan(r, Choice{Turn: turn})[0].Endpoint]++
	}
	if first["e0"] != 100 || first["e1"] != 300 || first["e2"] != 0 {
		t.Errorf("first choices over 400 turns = %v, want e0 100, e1 300, e2 (weight 0) none", first)
	}
}
