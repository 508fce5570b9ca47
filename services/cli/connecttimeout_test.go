package cli_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// silentServer returns a loopback address that takes connections and never says a word, as a
// NATS server hung after accept does: a client waits there for the server's INFO.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	return l.Addr().String()
}

// --timeout bounds the whole command, its connection to NATS included: against servers that
// never finish the handshake (one whose connections go unanswered, one hung after accept) each
// operator command stops after its --timeout with exit 1 naming the bound, where it waited 10 s
// per server (the handshake's own bound), 15 s here, whatever --timeout said.
func TestOperatorCommandsStopAfterTheirTimeoutWhileNATSDoesNotFinishTheHandshake(t *testing.T) {
	t.Parallel() // waits on silent servers; the bound it asserts is 8 times the --timeout
	url := "nats://" + eventstest.Blackhole(t) + ",nats://" + silentServer(t)
	type result struct {
		cmd    string
		code   int
		errOut string
		took   time.Duration
	}
	cmds := operatorCommands(t)
	results := make(chan result, len(cmds))
	for _, args := range cmds {
		go func() {
			start := time.Now()
			code, _, errOut := run(append(args, "--nats", url, "--timeout", "1s")...)
			results <- result{strings.Join(args[:2], " "), code, errOut, time.Since(start)}
		}()
	}
	for range cmds {
		r := <-results
		if r.code != 1 || r.took > 8*time.Second || !strings.Contains(r.errOut, "did not answer within 1s") {
			t.Errorf("%s --timeout 1s: exit %d after %s, want 1 within the bound, naming it:\n%s", r.cmd, r.code, r.took.Round(time.Millisecond), r.errOut)
		}
	}
}
