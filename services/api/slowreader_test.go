package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// A client that stops reading an app's answer halfway (a laptop closed, a link gone: TCP keeps
// the connection for minutes) holds up no one else: the API goes on folding STATE and
// answering other requests. It held the lock of the API's view while it wrote the answer, so
// the next STATE event waited for it, and every request after that event waited too.
func TestAClientThatStopsReadingAnAppHoldsUpNoOtherRequest(t *testing.T) {
	ns := eventstest.StartWith(t, eventstest.Options{MaxPayload: 16 << 20})
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	f := serveAPI(t, ns)

	// Long reasons make the app's answer far larger than what the sockets between the API and
	// its client buffer, so that the API's write of it waits for the client to read.
	long := strings.Repeat("x", 6<<20)
	for _, ep := range []struct{ pool, name string }{{"west", "w1"}, {"east", "e1"}} {
		e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{App: "shop", Pool: ep.pool, Endpoint: ep.name,
			To: events.StatusDown, Reason: long})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), ns.JS, events.EndpointStateSubject("shop", ep.pool, ep.name), e); err != nil {
			t.Fatal(err)
		}
	}
	var code int
	var body string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, body = f.do(t, "GET", "/v1/transitions?kind=endpoint&to=down", f.read, "")
		return code == http.StatusOK && strings.Count(body, `"to": "down"`) == 2
	}, "the two transitions down are not shown: %d %.200s", &code, &body)

	conn, err := net.Dial("tcp", f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET /v1/apps/shop HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer %s\r\n\r\n", f.read); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReaderSize(conn, 64).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("the app's answer begins %q, %v; want 200", status, err)
	}
	// The client reads no more of it: the API is now writing the rest, and waits.

	e, err := events.New(events.TypeEndpointUp, "test", time.Now(), events.Transition{App: "shop", Pool: "west", Endpoint: "w1",
		To: events.StatusUp, Reason: "back"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), ns.JS, events.EndpointStateSubject("shop", "west", "w1"), e); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	var got string
	eventstest.Eventually(t, 15*time.Second, func() bool {
		req, err := http.NewRequest("GET", f.url+"/v1/transitions?kind=endpoint&to=up", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+f.read)
		resp, err := client.Do(req)
		if err != nil {
			got = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got = fmt.Sprintf("%d %s", resp.StatusCode, b)
		return resp.StatusCode == http.StatusOK && strings.Contains(got, `"reason": "back"`)
	}, "while a client stopped reading an app's answer, the transition up after it is not shown: last %s", &got)
}
