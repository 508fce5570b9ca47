package natsd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/detourdev/detour/services/natsd"
	"github.com/nats-io/nats.go"
)

func TestTheEmbeddedServerLetsInOnlyItsGeneratedCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	creds, err := natsd.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(creds.File)
	if err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(creds.File) != dir {
		t.Fatalf("credentials file %s: %v, mode %v; want 0600 in %s", creds.File, err, fi.Mode().Perm(), dir)
	}
	s, err := natsd.Start(natsd.Options{StoreDir: filepath.Join(dir, "jetstream"), Port: -1, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)

	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Error("an anonymous client was let in")
	} else if !strings.Contains(err.Error(), "Authorization Violation") {
		t.Errorf("anonymous client: %v, want an authorization violation", err)
	}
	other, err := natsd.LoadCredentials(t.TempDir()) // another data directory, another key
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]natsd.Credentials{"the generated": creds, "another data directory's": other} {
		opt, err := c.Option()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(s.ClientURL(), opt)
		if (err == nil) != (name == "the generated") {
			t.Errorf("%s credentials: connect error %v", name, err)
		}
		if err == nil {
			nc.Close()
		}
	}

	again, err := natsd.LoadCredentials(dir)
	if err != nil || again != creds {
		t.Errorf("a later start read %+v, %v; want the same credentials %+v", again, err, creds)
	}
}

func TestCredentialsOthersCanReadAreRefused(t *testing.T) {
	dir := t.TempDir()
	creds, err := natsd.LoadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(creds.File, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natsd.LoadCredentials(dir); err == nil || !strings.Contains(err.Error(), "chmod 600 "+creds.File) {
		t.Errorf("err = %v, want a refusal that says chmod 600", err)
	}
}
