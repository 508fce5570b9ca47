package natsd_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// startRefused starts the embedded server with o and returns its error and how long it took.
func startRefused(t *testing.T, o natsd.Options) (time.Duration, error) {
	t.Helper()
	creds, err := natsd.LoadCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o.Credentials = creds
	start := time.Now()
	s, err := natsd.Start(o)
	if err == nil {
		s.Shutdown()
		t.Fatal("the server started")
	}
	return time.Since(start), err
}

func TestAServerWhosePortIsTakenFailsAtOnceSayingSo(t *testing.T) {
	// Before, it waited 10 s for a listener that never came, then guessed at the cause.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	took, err := startRefused(t, natsd.Options{StoreDir: filepath.Join(t.TempDir(), "jetstream"), Port: port})
	if !strings.Contains(err.Error(), "address already in use") || took > 3*time.Second {
		t.Errorf("after %s: %v; want at once an error that says the address is in use", took.Round(time.Millisecond), err)
	}
}

func TestAServerWhoseStoreCannotBeUsedFailsAtOnceSayingWhy(t *testing.T) {
	// A data directory that cannot hold JetStream's files (read-only, or not a directory): before,
	// it waited 10 s, then asked whether the port was in use.
	store := filepath.Join(t.TempDir(), "jetstream")
	if err := os.WriteFile(store, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	took, err := startRefused(t, natsd.Options{StoreDir: store, Port: -1})
	if msg := err.Error(); !strings.Contains(msg, "JetStream") || !strings.Contains(msg, store) || strings.Contains(msg, "port") || took > 3*time.Second {
		t.Errorf("after %s: %v; want at once an error that says why JetStream cannot use %s", took.Round(time.Millisecond), err, store)
	}
}
