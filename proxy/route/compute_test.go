package route

import (
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/events/state"
)

const twoEdges = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    ingress: [edge-west, edge-east]
    primary_edge: edge-west
    pools:
      - name: west
        region: us-west
        min_available: 2
        endpoints:
          - {name: w1, address: "127.0.0.11:8081"}
          - {name: w2, address: "127.0.0.12:8081", weight: 3}
          - {name: w3, address: "127.0.0.13:8081"}
      - name: east
        region: us-east
        endpoints: [{name: e1, address: "127.0.0.31:8081"}]
edges:
  - name: edge-west
    region: us-west
    hostname: edge-west.demo.test
    address: 127.0.0.21
    apps: [{app: shop, listen: "127.0.0.21:8080", secondary: edge-east, retry_methods: [PUT]}]
  - name: edge-east
    region: us-east
    hostname: edge-east.demo.test
    address: 127.0.0.22
    apps: [{app: shop, listen: "127.0.0.22:9090", secondary: edge-west}]
`

// record appends one state event to v, as the decider or the controller would.
func record(t *testing.T, v *state.View, seq uint64, subject, typ string, data any) {
	t.Helper()
	e, err := events.New(typ, "test", time.Unix(1700000000, 0), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Apply(subject, seq, e); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func TestComputeProjectsTheLocalPoolAndTheSecondary(t *testing.T) {
	c := eventstest.Config(t, twoEdges)
	v := state.NewView()
	record(t, v, 4, events.EndpointStateSubject("shop", "west", "w1"), events.TypeEndpointDown, events.Transition{})
	record(t, v, 5, events.EdgeStateSubject("edge-east"), events.TypeEdgeUp, events.Transition{})

	got, err := Compute(c, v, "edge-west", "abc")
	if err != nil {
		t.Fatal(err)
	}
	if got.Edge != "edge-west" || got.StateSeq != 5 || got.ConfigSHA256 != "abc" || len(got.Apps) != 1 {
		t.Fatalf("table = %+v, want edge-west at state seq 5 with one app", got)
	}
	a := got.Apps[0]
	if a.App != "shop" || a.Pool != "west" || !a.Available {
		t.Errorf("app route = %s/%s available=%v, want shop/west available (2 of 3 serving, min 2)", a.App, a.Pool, a.Available)
	}
	want := []events.RouteEndpoint{
		{Name: "w1", Address: "127.0.0.11:8081", Status: events.StatusDown, Weight: 1},
		{Name: "w2", Address: "127.0.0.12:8081", Status: events.StatusUnknown, Weight: 3},
		{Name: "w3", Address: "127.0.0.13:8081", Status: events.StatusUnknown, Weight: 1},
	}
	for i := range want {
		if a.Endpoints[i] != want[i] {
			t.Errorf("endpoint %d = %+v, want %+v", i, a.Endpoints[i], want[i])
		}
	}
	wantSec := events.SecondaryRoute{Edge: "edge-east", Hostname: "edge-east.demo.test.", Address: "127.0.0.22", Port: 9090, Status: events.StatusUp}
	if a.Secondary == nil || *a.Secondary != wantSec {
		t.Errorf("secondary = %+v, want %+v", a.Secondary, wantSec)
	}
	if len(a.RetryMethods) != 1 || a.RetryMethods[0] != "PUT" {
		t.Errorf("retry methods = %v, want [PUT]", a.RetryMethods)
	}
}

func TestComputeAvailability(t *testing.T) {
	type mark struct {
		endpoint, typ string
	}
	tests := []struct {
		name      string
		marks     []mark
		overrides map[string]string // endpoint ("" for the pool) -> action
		want      bool
	}{
		{name: "a fresh pool is available before any decision", want: true},
		{name: "one down of three keeps min_available 2", marks: []mark{{"w1", events.TypeEndpointDown}}, want: true},
		{name: "two down of three is below min_available 2", marks: []mark{{"w1", events.TypeEndpointDown}, {"w3", events.TypeEndpointDown}}},
		{name: "a drained instance does not count", marks: []mark{{"w1", events.TypeEndpointDown}, {"w2", events.TypeEndpointDrained}}},
		{name: "recovered instances count again", marks: []mark{{"w1", events.TypeEndpointDown}, {"w3", events.TypeEndpointDown}, {"w3", events.TypeEndpointUp}}, want: true},
		{name: "a force_down override of the pool wins over up", marks: []mark{{"w1", events.TypeEndpointUp}}, overrides: map[string]string{"": events.ActionForceDown}},
		{name: "a force_up override wins over down", marks: []mark{{"w1", events.TypeEndpointDown}, {"w3", events.TypeEndpointDown}}, overrides: map[string]string{"w1": events.ActionForceUp}, want: true},
	}
	c := eventstest.Config(t, twoEdges)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := state.NewView()
			seq := uint64(0)
			for _, m := range tt.marks {
				seq++
				record(t, v, seq, events.EndpointStateSubject("shop", "west", m.endpoint), m.typ, events.Transition{})
			}
			for ep, action := range tt.overrides {
				seq++
				record(t, v, seq, events.OverrideSubject("shop", "west", ep), events.TypeOverrideSet,
					events.Override{App: "shop", Pool: "west", Endpoint: ep, Action: action, Reason: "test", By: "t"})
			}
			got, err := Compute(c, v, "edge-west", "")
			if err != nil {
				t.Fatal(err)
			}
			if got.Apps[0].Available != tt.want {
				t.Errorf("available = %v, want %v (endpoints %+v)", got.Apps[0].Available, tt.want, got.Apps[0].Endpoints)
			}
		})
	}
}

func TestComputeRefusesAnEdgeThatIsNotConfigured(t *testing.T) {
	_, err := Compute(eventstest.Config(t, twoEdges), state.NewView(), "edge-north", "")
	if err == nil || err.Error() != `compute routes: no edge "edge-north" in the configuration` {
		t.Fatalf("err = %v, want it to name the missing edge", err)
	}
}

func TestComputedTablesPassTheirOwnCheck(t *testing.T) {
	c := eventstest.Config(t, twoEdges)
	for _, edge := range []string{"edge-west", "edge-east"} {
		got, err := Compute(c, state.NewView(), edge, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Check(); err != nil {
			t.Errorf("%s: check: %v", edge, err)
		}
	}
}
