package api_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// A client that sends a request's head and then holds back the body it announced, with a
// token or without one, is cut off once ReadTimeout has passed: otherwise each such connection
// held a goroutine and a descriptor for ever, and anyone who can reach the port could pile them
// up without a token.
func TestARequestWhoseBodyNeverComesIsCutOffAfterTheReadTimeout(t *testing.T) {
	f := start(t)
	srv, err := api.Listen(api.Options{JS: f.ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		ReadTimeout: 300 * time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-slow", srv.Run)
	for _, c := range []struct{ name, auth string }{
		{"without a token", ""},
		{"with a write token", "Authorization: Bearer " + f.write + "\r\n"},
	} {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := "POST /v1/config/apply HTTP/1.1\r\nHost: api.example\r\n" + c.auth + "Content-Length: 1000\r\n\r\n"
		if _, err := io.WriteString(conn, head+"zones: ["); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("a request %s whose body stops after 8 bytes: still open after %v, want the server to close it after its 300ms read timeout", c.name, time.Since(start))
		}
	}
}

// The status page's event stream reads nothing after its request, and outlives the read
// timeout: it is still told of a transition once the timeout has passed.
func TestTheStatusStreamOutlivesTheReadTimeout(t *testing.T) {
	f := start(t)
	const timeout = 200 * time.Millisecond
	srv, err := api.Listen(api.Options{JS: f.ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", Tokens: f.tokens,
		ReadTimeout: timeout, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-stream", srv.Run)
	resp, err := http.Get("http://" + srv.Addr() + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				lines <- sc.Text()
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing within 10s", what)
		}
		return ""
	}
	next("the first status")
	<-time.After(3 * timeout) // the read timeout passes: this waits for time itself, not for an event
	f.transition(t, "w1", events.StatusDown)
	for {
		if l := next("a status with w1 down after the read timeout"); strings.Contains(l, `"status":"down"`) {
			return
		}
	}
}
