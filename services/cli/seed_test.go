package cli_test

import (
	"os"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/natsd"
)

func TestEveryCommandRefusesASeedFileOthersMayReadAsDetourUpDoes(t *testing.T) {
	dir := t.TempDir()
	creds, err := natsd.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(creds.File, 0o644); err != nil {
		t.Fatal(err)
	}
	_, upErr := natsd.LoadCredentials(dir)
	if upErr == nil {
		t.Fatal("detour up's credentials accept a seed file of mode 0644")
	}
	want := "nats credentials " + creds.File + ": mode 0644 lets others read it: chmod 600 " + creds.File
	if upErr.Error() != want {
		t.Fatalf("detour up refuses with %q, want %q", upErr, want)
	}
	t.Setenv("DETOUR_NATS_NKEY", creds.File)
	t.Setenv("DETOUR_NATS", "nats://127.0.0.1:1") // nothing listens: the seed is refused first
	for _, args := range [][]string{
		{"events", "--stream", "STATE"},
		{"override", "list"},
		{"replay"},
		{"config", "history"},
	} {
		code, _, stderr := run(args...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("detour %s exited %d with %q; want it to refuse with %q", strings.Join(args, " "), code, stderr, want)
		}
	}
}
