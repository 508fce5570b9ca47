package controller

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
)

func heartbeatMsg(t testing.TB, typ string, data any) []byte {
	t.Helper()
	e, err := events.New(typ, "test", time.Unix(1700000000, 0), data)
	if err != nil {
		t.Fatal(err)
	}
	return e.Encode()
}

func TestDecodeHeartbeatRefusesWhatIsNotThisEdgesHeartbeat(t *testing.T) {
	subject := events.HeartbeatSubject("edge-west")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{name: "a heartbeat of the subject's edge is accepted", data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-west", Seq: 1})},
		{name: "not JSON", data: []byte("beat"), want: "decode heartbeat: malformed event: invalid character 'b' looking for beginning of value"},
		{name: "another event type", data: heartbeatMsg(t, events.TypeEdgeUp, events.Heartbeat{Edge: "edge-west"}), want: `decode heartbeat: malformed event: type "detour.edge.up.v1" is not detour.edge.heartbeat.v1`},
		{name: "another edge's heartbeat", data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-east"}), want: `decode heartbeat: malformed event: edge "edge-east" does not match subject detour.heartbeat.edge-west`},
		{name: "an edge name that is no subject token", data: heartbeatMsg(t, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge west"}), want: `decode heartbeat: malformed event: edge "edge west" does not match subject detour.heartbeat.edge-west`},
		{name: "a payload of the wrong shape", data: heartbeatMsg(t, events.TypeEdgeHeartbeat, map[string]any{"seq": "one"}), want: "decode heartbeat: malformed event: detour.edge.heartbeat.v1 data: json: cannot unmarshal string into Go struct field Heartbeat.seq of type uint64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, hb, err := decodeHeartbeat(subject, tt.data)
			if tt.want == "" {
				if err != nil || hb.Edge != "edge-west" {
					t.Fatalf("decode = %+v, %v; want edge-west's heartbeat", hb, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, events.ErrMalformed) {
				t.Error("err does not wrap ErrMalformed")
			}
		})
	}
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add("detour.heartbeat.edge-west", heartbeatMsg(f, events.TypeEdgeHeartbeat, events.Heartbeat{Edge: "edge-west", Seq: 7}))
	f.Add("detour.heartbeat.x", []byte(`{"type":"detour.edge.heartbeat.v1","id":"1","time":"2026-01-01T00:00:00Z","data":{"edge":"x.y"}}`))
	f.Add("detour.heartbeat.", []byte("{}"))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		_, hb, err := decodeHeartbeat(subject, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode heartbeat: ") {
				t.Fatalf("error %q does not say what failed", err)
			}
			return
		}
		if events.HeartbeatSubject(hb.Edge) != subject {
			t.Fatalf("accepted edge %q's heartbeat on %s", hb.Edge, subject)
		}
	})
}

// BenchmarkDecodeHeartbeat decodes the heartbeat of an edge of 10,000 apps as the controller
// receives it every interval: naming no app (since the edge names them only when they change)
// against naming every one.
func BenchmarkDecodeHeartbeat(b *testing.B) {
	apps := make([]string, 10000)
	for i := range apps {
		apps[i] = "app-" + strings.Repeat("0", 5-len(strconv.Itoa(i))) + strconv.Itoa(i)
	}
	for _, c := range []struct {
		name string
		apps []string
	}{{"no apps", nil}, {"10000 apps", apps}} {
		hb := events.Heartbeat{Edge: "edge-0", Region: "safe", Seq: 42, Started: time.Unix(1700000000, 0).UTC(), IntervalMS: 1000, Apps: c.apps}
		data := heartbeatMsg(b, events.TypeEdgeHeartbeat, hb)
		subject := events.HeartbeatSubject("edge-0")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := decodeHeartbeat(subject, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
