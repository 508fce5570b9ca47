package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
)

// A cluster whose JetStream stops answering (no quorum, a full disk) while its servers still
// take connections: override and drill stop after --timeout (2 s here, 30 s by default) with exit
// 1, saying the cluster did not answer within it, as apply does; override set, drill plan and
// drill run waited for the active configuration for ever, printing nothing.
func TestOverrideAndDrillStopNamingTheClusterWhenJetStreamDoesNotAnswer(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	s := startBare(t)
	if code, out, errOut := run("apply", writeFile(t, "v1.yaml", planDoc), "--nats", s.URL, "-m", "first"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	d := writeFile(t, "drill.yaml", "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]\n")
	s.StopJetStream(t)

	type result struct {
		cmd    string
		code   int
		errOut string
		took   time.Duration
	}
	cmds := [][]string{
		{"override", "set", "shop", "west", "--action", "drain", "--reason", "maintenance"},
		{"override", "clear", "shop", "west", "--reason", "done"},
		{"override", "list"},
		{"drill", "plan", d},
		{"drill", "run", d, "--dns", "127.0.0.1:1"},
		{"drill", "rollback", "d-0193d2c4a1b27"},
	}
	results := make(chan result, len(cmds))
	for _, args := range cmds {
		go func() {
			start := time.Now()
			code, _, errOut := run(append(args, "--nats", s.URL, "--timeout", "2s")...)
			results <- result{strings.Join(args[:2], " "), code, errOut, time.Since(start)}
		}()
	}
	deadline := time.After(20 * time.Second)
	for done := range len(cmds) {
		select {
		case r := <-results:
			if r.code != 1 || !strings.Contains(r.errOut, "the NATS cluster did not answer within 2s") {
				t.Errorf("%s: exit %d after %s, want 1 naming the cluster:\n%s", r.cmd, r.code, r.took.Round(time.Millisecond), r.errOut)
			}
		case <-deadline:
			t.Fatalf("%d of %d commands still running after 20s against a JetStream that does not answer", len(cmds)-done, len(cmds))
		}
	}
}

// A loaded or distant cluster answers each request 1.1 s late: override and drill wait for it
// and answer as they would at once.
func TestOverrideAndDrillWaitForAClusterThatAnswersAfterASecond(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	s := startBare(t)
	if code, out, errOut := run("apply", writeFile(t, "v1.yaml", planDoc), "--nats", s.URL, "-m", "first"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	d := writeFile(t, "drill.yaml", "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]\n")
	link := eventstest.NewSlowLink(t, s.URL)
	link.Delay(1100*time.Millisecond, 0)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"override", "set", "shop", "west", "--action", "drain", "--reason", "maintenance"}, 0, "override set on detour.state.override.shop.west._pool"},
		{[]string{"override", "list"}, 0, "maintenance"},
		{[]string{"override", "clear", "shop", "west", "--reason", "done"}, 0, "override clear on detour.state.override.shop.west._pool"},
		{[]string{"drill", "plan", d}, 0, "shop/west"},
		{[]string{"drill", "rollback", "d-0193d2c4a1b27"}, 1, "drill d-0193d2c4a1b27 is not in force"},
	} {
		code, out, errOut := run(append(c.args, "--nats", link.URL)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s%s", strings.Join(c.args[:2], " "), code, c.code, c.want, out, errOut)
		}
	}
}
