package cli_test

import (
	"strings"
	"testing"
	"time"
)

// A cluster whose JetStream stops answering while its servers still take connections: apply,
// plan and config get stop after --timeout (2 s here, 30 s by default) with exit 1 naming the
// cluster and the bound, as override and drill do; they printed "context deadline exceeded"
// alone, which told an operator nothing to look at.
func TestApplyPlanAndConfigStopNamingTheClusterWhenJetStreamDoesNotAnswer(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	if code, out, errOut := run("apply", v1, "--nats", s.URL, "-m", "first"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	s.StopJetStream(t)

	type result struct {
		cmd    string
		code   int
		errOut string
	}
	cmds := [][]string{
		{"apply", v1},
		{"apply", v1, "--expect-version", "1"},
		{"plan", v1},
		{"config", "get"},
		{"config", "history"},
	}
	results := make(chan result, len(cmds))
	for _, args := range cmds {
		go func() {
			code, _, errOut := run(append(args, "--nats", s.URL, "--timeout", "2s")...)
			results <- result{strings.Join(args, " "), code, errOut}
		}()
	}
	deadline := time.After(20 * time.Second)
	for done := range len(cmds) {
		select {
		case r := <-results:
			if r.code != 1 || !strings.Contains(r.errOut, "the NATS cluster did not answer within 2s") {
				t.Errorf("%s: exit %d, want 1 naming the cluster:\n%s", r.cmd, r.code, r.errOut)
			}
		case <-deadline:
			t.Fatalf("%d of %d commands still running after 20s against a JetStream that does not answer", len(cmds)-done, len(cmds))
		}
	}
}
