package cli_test

import (
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
)

// operatorCommands are the commands that wait for the cluster up to --timeout.
func operatorCommands(t *testing.T) [][]string {
	d := writeFile(t, "drill.yaml", "name: d\nsteps: [{fail: pool shop/west, rto: 2s}]\n")
	v1 := writeFile(t, "v1.yaml", planDoc)
	return [][]string{
		{"apply", v1}, {"plan", v1}, {"config", "get"}, {"config", "history"},
		{"override", "set", "shop", "west", "--action", "drain", "--reason", "maintenance"},
		{"override", "clear", "shop", "west", "--reason", "done"}, {"override", "list"},
		{"drill", "plan", d}, {"drill", "run", d}, {"drill", "rollback", "d-0193d2c4a1b27"},
	}
}

// An operator's command waits 30 s for a silent cluster unless --timeout says otherwise, as its
// help says: the flag's default is what a command without it waits.
func TestOperatorCommandsWaitThirtySecondsForTheClusterByDefault(t *testing.T) {
	for _, cmd := range []string{"apply", "plan", "config", "override", "drill"} {
		_, out, _ := run("help", cmd)
		_, flag, _ := strings.Cut(out, "  -timeout duration\n")
		flag, _, _ = strings.Cut(flag, "\n  -")
		if !strings.HasSuffix(strings.TrimSpace(flag), "(default 30s)") {
			t.Errorf("detour help %s shows --timeout as %q, want it to default to 30s:\n%s", cmd, flag, out)
		}
	}
}

// --timeout takes a positive duration: 0 or less would fail every command at once, and is
// refused with exit 2, naming the flag, before anything is sent.
func TestOperatorCommandsRefuseATimeoutThatIsNotAPositiveDuration(t *testing.T) {
	closed := "nats://" + eventstest.ClosedPort(t)
	for _, args := range operatorCommands(t) {
		for value, want := range map[string]string{
			"0":    "--timeout: want a positive duration such as 30s, got 0s",
			"-1s":  "--timeout: want a positive duration such as 30s, got -1s",
			"soon": `invalid value "soon" for flag -timeout`,
		} {
			code, _, errOut := run(append(args, "--nats", closed, "--timeout", value)...)
			if code != 2 || !strings.Contains(errOut, want) {
				t.Errorf("%s --timeout %s: exit %d, want 2 and %q:\n%s", strings.Join(args[:2], " "), value, code, want, errOut)
			}
		}
	}
}
