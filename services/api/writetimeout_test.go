package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// writeBound is the API's WriteTimeout in these tests.
const writeBound = 300 * time.Millisecond

// boundedWrites starts an API whose answers are bounded by writeBound, on a NATS server that
// takes payloads of maxPayload, with a read token.
func boundedWrites(t *testing.T, maxPayload int32) *fixture {
	t.Helper()
	ns := eventstest.StartWith(t, eventstest.Options{MaxPayload: maxPayload})
	if _, _, err := config.Apply(t.Context(), ns.JS, "v1.yaml", []byte(doc), config.ApplyOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokens")
	read, err := api.AddToken(path, "viewer", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.Listen(api.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", TokensPath: path,
		WriteTimeout: writeBound, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-bounded-answers", srv.Run)
	return &fixture{ns: ns, srv: srv, url: "http://" + srv.Addr(), read: read}
}

// A client with a valid token that stops reading a large answer (or advertises a zero TCP
// window) has its connection closed once the answer has taken longer than the API's write
// timeout: it kept the API's goroutine and buffers for as long as TCP kept the connection, for
// minutes, or for ever to a client that acknowledges and reads nothing.
func TestAClientThatStopsReadingALargeAnswerIsCutOffPastTheWriteTimeout(t *testing.T) {
	f := boundedWrites(t, 16<<20)
	long := strings.Repeat("x", 6<<20) // far more than the sockets between the API and its client buffer
	for _, ep := range []struct{ pool, name string }{{"west", "w1"}, {"east", "e1"}} {
		e, err := events.New(events.TypeEndpointDown, "test", time.Now(), events.Transition{App: "shop", Pool: ep.pool, Endpoint: ep.name,
			To: events.StatusDown, Reason: long})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := events.Publish(context.Background(), f.ns.JS, events.EndpointStateSubject("shop", ep.pool, ep.name), e); err != nil {
			t.Fatal(err)
		}
	}
	// A pool's transition after them, shown, says they are folded: its answer is small enough to
	// be read within writeBound on a loaded machine, where theirs are not.
	e, err := events.New(events.TypePoolDown, "test", time.Now(), events.Transition{App: "shop", Pool: "west", To: events.StatusDown, Reason: "marker"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(context.Background(), f.ns.JS, events.PoolStateSubject("shop", "west"), e); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	eventstest.Eventually(t, 10*time.Second, func() bool {
		code, body = f.do(t, "GET", "/v1/transitions?kind=pool", f.read, "")
		return code == http.StatusOK && strings.Contains(body, `"reason": "marker"`)
	}, "the pool's transition after the endpoints' is not shown: %d %.200s", &code, &body)

	conn, err := net.Dial("tcp", f.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /v1/apps/shop HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer %s\r\n\r\n", f.read); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 64)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if status, err := r.ReadString('\n'); err != nil || !strings.Contains(status, "200") {
		t.Fatalf("the app's answer begins %q, %v; want 200", status, err)
	}
	// The client reads nothing for a while: what is tested, not a wait for something to happen.
	<-time.After(4 * writeBound)

	// Read as fast as it comes, the rest ends where the API gave up, closing the connection: before
	// the answer's last chunk, and before the read's own deadline (the API waited on, then kept
	// the connection for a next request).
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after %s without reading, the answer went on until %v (%d bytes read); want the connection closed", 4*writeBound, err, len(rest))
	}
	if strings.HasSuffix(string(rest), "\r\n0\r\n\r\n") {
		t.Errorf("after %s without reading, the whole answer came (%d bytes); want it cut off", 4*writeBound, len(rest))
	}
}

// The status page's stream of events lives for hours: each event written has the write timeout
// of its own, so that the stream goes on past it, and a page that stops reading is cut off all
// the same.
func TestTheStatusStreamDeliversEventsLongAfterTheWriteTimeout(t *testing.T) {
	f := boundedWrites(t, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", f.url+"/status/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.read)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := bufio.NewReader(resp.Body)
	next := func() string {
		t.Helper()
		for {
			line, err := stream.ReadString('\n')
			if err != nil {
				t.Fatalf("the status stream ended: %v", err)
			}
			if strings.HasPrefix(line, "data: ") {
				return line
			}
		}
	}
	next()
	for i := range 3 {
		// No event for longer than the write timeout: what is tested, not a wait for something.
		<-time.After(2 * writeBound)
		to := events.StatusDown
		if i%2 == 1 {
			to = events.StatusUp
		}
		f.transition(t, "w1", to)
		for !strings.Contains(next(), `"status":"`+string(to)+`"`) {
		}
	}
}
