package proxy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/proxy/route"
)

func encode(t testing.TB, typ string, data any) []byte {
	t.Helper()
	e, err := events.New(typ, "test", time.Unix(1700000000, 0), data)
	if err != nil {
		t.Fatal(err)
	}
	return e.Encode()
}

func TestDecodeTableRefusesWhatAnEdgeCannotUse(t *testing.T) {
	good := events.RouteTable{Edge: "edge-west", Apps: []events.AppRoute{{App: "shop", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1}}}}}
	badAddr := good
	badAddr.Apps = []events.AppRoute{{App: "shop", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1", Weight: 1}}}}
	badPort := good
	badPort.Apps = []events.AppRoute{{App: "shop", Secondary: &events.SecondaryRoute{Edge: "e", Hostname: "e.demo.test.", Port: 0}}}
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{name: "a table for this edge is accepted", msg: encode(t, events.TypeRoutesComputed, good)},
		{name: "not JSON", msg: []byte("{"), want: "decode route table: malformed event: unexpected end of JSON input"},
		{name: "another event type", msg: encode(t, events.TypeEdgeUp, good), want: `decode route table: malformed event: type "detour.edge.up.v1" is not detour.routes.computed.v1`},
		{name: "another edge's table", msg: encode(t, events.TypeRoutesComputed, events.RouteTable{Edge: "edge-east"}), want: `decode route table: malformed event: edge: table is for "edge-east", not "edge-west"`},
		{name: "an instance without a port", msg: encode(t, events.TypeRoutesComputed, badAddr), want: `decode route table: malformed event: apps[0].endpoints[0].address: want ip:port, got "127.0.0.1"`},
		{name: "a secondary without a port", msg: encode(t, events.TypeRoutesComputed, badPort), want: "decode route table: malformed event: apps[0].secondary.port: want a port in 1-65535, got 0"},
		{name: "a weight past the configuration's bound", msg: encode(t, events.TypeRoutesComputed, events.RouteTable{Edge: "edge-west", Apps: []events.AppRoute{good.Apps[0], {App: "blog", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1 << 62}}}}}), want: "decode route table: malformed event: apps[1].endpoints[0].weight: want at most 1000000, got 4611686018427387904"},
		{name: "a payload of the wrong shape", msg: encode(t, events.TypeRoutesComputed, map[string]any{"apps": "none"}), want: "decode route table: malformed event: detour.routes.computed.v1 data: json: cannot unmarshal string into Go struct field RouteTable.apps of type []events.AppRoute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeTable(tt.msg, "edge-west")
			if tt.want == "" {
				if err != nil || got.Edge != "edge-west" {
					t.Fatalf("decode = %+v, %v; want the table", got, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, events.ErrMalformed) {
				t.Errorf("err does not wrap ErrMalformed: the watcher could not count it")
			}
		})
	}
}

func FuzzDecodeTable(f *testing.F) {
	f.Add(encode(f, events.TypeRoutesComputed, events.RouteTable{Edge: "edge-west", Apps: []events.AppRoute{{App: "shop",
		Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1}},
		Secondary: &events.SecondaryRoute{Edge: "edge-east", Hostname: "edge-east.demo.test.", Address: "127.0.0.22", Port: 80}}}}))
	f.Add([]byte(`{"type":"detour.routes.computed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"edge":"edge-west","apps":[{"app":"shop","endpoints":[{"address":"[::1]:80","weight":-1}]}]}}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tbl, err := decodeTable(b, "edge-west")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode route table: ") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		// Whatever is accepted must be safe to route with.
		if tbl.Check() != nil || tbl.Edge != "edge-west" {
			t.Fatalf("accepted a table that fails its check: %+v", tbl)
		}
	})
}

func TestDecodeRouteRefusesWhatAnEdgeCannotUse(t *testing.T) {
	good := events.EdgeRoute{Edge: "edge-west", StateSeq: 7, Route: events.AppRoute{App: "shop", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1}}}}
	badAddr := good
	badAddr.Route = events.AppRoute{App: "shop", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1", Weight: 1}}}
	badApp := good
	badApp.Route = events.AppRoute{App: "sh op"}
	heavy := good
	heavy.Route = events.AppRoute{App: "shop", Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1_000_001}}}
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{name: "a route for this edge is accepted", msg: encode(t, events.TypeRouteComputed, good)},
		{name: "a whole table is not a route", msg: encode(t, events.TypeRoutesComputed, good.Table()), want: `decode route: malformed event: type "detour.routes.computed.v1" is not detour.route.computed.v1`},
		{name: "another edge's route", msg: encode(t, events.TypeRouteComputed, events.EdgeRoute{Edge: "edge-east", Route: good.Route}), want: `decode route: malformed event: edge: route is for "edge-east", not "edge-west"`},
		{name: "an instance without a port", msg: encode(t, events.TypeRouteComputed, badAddr), want: `decode route: malformed event: route.endpoints[0].address: want ip:port, got "127.0.0.1"`},
		{name: "an app that is no subject token", msg: encode(t, events.TypeRouteComputed, badApp), want: `decode route: malformed event: route.app: "sh op" may hold only letters, digits, '_' and '-'`},
		{name: "a weight past the configuration's bound", msg: encode(t, events.TypeRouteComputed, heavy), want: `decode route: malformed event: route.endpoints[0].weight: want at most 1000000, got 1000001`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRoute(tt.msg, "edge-west")
			if tt.want == "" {
				if err != nil || got.Edge != "edge-west" || got.Route.App != "shop" || got.StateSeq != 7 {
					t.Fatalf("decode = %+v, %v; want the route", got, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, events.ErrMalformed) {
				t.Errorf("err does not wrap ErrMalformed: the watcher could not count it")
			}
		})
	}
}

func FuzzDecodeRoute(f *testing.F) {
	f.Add(encode(f, events.TypeRouteComputed, events.EdgeRoute{Edge: "edge-west", Route: events.AppRoute{App: "shop",
		Endpoints: []events.RouteEndpoint{{Name: "a", Address: "127.0.0.1:80", Weight: 1}},
		Secondary: &events.SecondaryRoute{Edge: "edge-east", Hostname: "edge-east.demo.test.", Address: "127.0.0.22", Port: 80}}}))
	f.Add([]byte(`{"type":"detour.route.computed.v1","id":"x","time":"2026-01-01T00:00:00Z","data":{"edge":"edge-west","route":{"app":"shop","endpoints":[{"address":"[::1]:80","weight":-1}]}}}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRoute(b, "edge-west")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode route: ") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		if r.Check() != nil || r.Edge != "edge-west" {
			t.Fatalf("accepted a route that fails its check: %+v", r)
		}
		route.Plan(&r.Route, route.Choice{Turn: 7}) // must not panic
	})
}
