package config_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/rs/zerolog"
)

// A file first read while it is being rewritten in place (truncated, its value still to come) is
// read again once it has settled, rather than taken as empty: a TSIG key or a webhook secret
// read so would refuse the whole version that names it (kept refused until the next one), and a
// check's header would fail its checks.
func TestAFileFirstReadMidRewriteIsReadAgainOnceSettled(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "xfr.key")
	const key = "eGZyIHRlc3Qga2V5LCAzMiBieXRlcyBsb25nISEhIQ=="
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The rewrite's second write comes a moment after its truncation, as a slow writer's does.
	written := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, err := f.WriteString(key + "\n")
		written <- err
	}()
	dirs := credentialDirs(t, dir)
	w := config.WatchFile(file, dirs, config.TSIGFileValue, time.Now, config.FileRecheck, config.FileLog{Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if v := w.Load(); v.Err != nil || v.S != key {
		t.Errorf("a key file read as it was rewritten: %q, %v; want the key the rewrite left", v.S, v.Err)
	}
}
