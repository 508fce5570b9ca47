package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/drill"
	"github.com/detourdev/detour/services/override"
)

// sendAndLeave sends one request to the API at addr and closes its connection at once, as a
// client cut off or killed (Ctrl-C on curl) right after sending it does.
func sendAndLeave(t *testing.T, addr, method, path, token, body string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", method, path, addr, token, len(body), body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
}

// A write through the API (a drill's rollback, an override, an apply) that a cluster answers
// late runs to its end though its client closed the connection as soon as it sent the request:
// the write was bound to the request, and ended half done when the client left (the rollback
// never stored, the override and the apply not either).
func TestAWriteWhoseClientLeftAtOnceRunsToItsEnd(t *testing.T) {
	base := start(t)
	west := events.Failure{Kind: events.FailPool, App: "shop", Pool: "west"}
	base.drillEvent(t, "d2", events.TypeDrillStarted, events.DrillStarted{ID: "d2", Name: "west-outage", By: "ops", Apps: []string{"shop"}, Steps: 1,
		RollbackAt: time.Now().Add(time.Hour), LeaseMS: 60000})
	base.drillEvent(t, "d2", events.TypeDrillStepStarted, events.DrillStep{Index: 0, Step: "pool shop/west", Failures: []events.Failure{west}})
	f, link := slowAPI(t, base, 0)
	link.Delay(300*time.Millisecond, 0)
	next := strings.Replace(doc, "127.0.0.12:80", "127.0.0.13:80", 1)
	addr := strings.TrimPrefix(f.url, "http://")
	ctx := context.Background()
	for _, c := range []struct {
		name, method, path, body string
		done                     func() bool
	}{
		{"drill rollback", "POST", "/v1/drills/d2/rollback", "", func() bool {
			v, err := drill.ReadDrills(ctx, base.ns.JS)
			return err == nil && v.Ended("d2")
		}},
		{"override set", "POST", "/v1/overrides", `{"app": "shop", "pool": "west", "action": "drain", "reason": "maintenance"}`, func() bool {
			list, err := override.List(ctx, base.ns.JS)
			return err == nil && len(list) == 1 && list[0].By == "api/ops"
		}},
		{"apply", "POST", "/v1/config/apply?expect_version=1&message=" + url.QueryEscape("left at once"), next, func() bool {
			v, err := config.Active(ctx, base.ns.JS)
			return err == nil && v.Number > 1 && v.By == "api/ops" && v.Message == "left at once"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sendAndLeave(t, addr, c.method, c.path, f.write, c.body)
			eventstest.Eventually(t, 15*time.Second, c.done, "%s: not stored though the API has 10 s for it, after its client left at once", c.name)
		})
	}
}
