//go:build unix

package prober

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// authServer is a loopback HTTP server that records the Authorization header of each request.
func authServer(t *testing.T) (addr string, last func() string) {
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("Authorization")
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() string {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// writeRenamed replaces the file at path by renaming a new one over it, as most tools that
// rotate a credential do.
func writeRenamed(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// mountSecret lays out dir as the kubelet lays out a secret's volume: the key token a symlink
// to ..data/token, ..data a symlink to a directory of this version, swapped whole by a rename.
func mountSecret(t *testing.T, dir, version, token string) {
	t.Helper()
	v := filepath.Join(dir, version)
	if err := os.Mkdir(v, 0o700); err != nil {
		t.Fatal(err)
	}
	if token != "" {
		if err := os.WriteFile(filepath.Join(v, "token"), []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "token")); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")); err != nil {
			t.Fatal(err)
		}
	}
}

// A credential file rotated while the checks run is used within a recheck, however it is
// rotated; a rotation that breaks the file (gone, too long, empty) leaves the checks with the
// last value read well, logged once, until the file is whole again.
func TestARotatedHeaderFileIsUsedWithinARecheckAndABrokenOneKeepsTheLastValue(t *testing.T) {
	const recheck = time.Second
	for _, way := range []struct {
		name   string
		path   func(dir string) string
		rotate func(t *testing.T, dir, path, token string, n int)
		breaks []func(t *testing.T, dir, path string, n int)
	}{
		{
			name:   "renamed over",
			path:   func(dir string) string { return filepath.Join(dir, "auth") },
			rotate: func(t *testing.T, _, path, token string, _ int) { writeRenamed(t, path, token+"\n") },
			breaks: []func(t *testing.T, dir, path string, n int){
				func(t *testing.T, _, path string, _ int) { _ = os.Remove(path) },
				func(t *testing.T, _, path string, _ int) { writeRenamed(t, path, strings.Repeat("a", 70<<10)) },
				func(t *testing.T, _, path string, _ int) { writeRenamed(t, path, " \n") },
			},
		},
		{
			name:   "rewritten in place",
			path:   func(dir string) string { return filepath.Join(dir, "auth") },
			rotate: func(t *testing.T, _, path, token string, _ int) { rewrite(t, path, token) },
			breaks: []func(t *testing.T, dir, path string, n int){
				func(t *testing.T, _, path string, _ int) { rewrite(t, path, "") },
				func(t *testing.T, _, path string, _ int) { rewrite(t, path, "Bearer a\r\nX-Injected: b") },
			},
		},
		{
			name: "a Kubernetes secret's symlinks swapped",
			path: func(dir string) string { return filepath.Join(dir, "token") },
			rotate: func(t *testing.T, dir, _, token string, n int) {
				mountSecret(t, dir, "..v"+strings.Repeat("i", n), token)
			},
			breaks: []func(t *testing.T, dir, path string, n int){
				func(t *testing.T, dir, _ string, n int) { mountSecret(t, dir, "..broken"+strings.Repeat("i", n), "") },
			},
		},
	} {
		t.Run(way.name, func(t *testing.T) {
			dir := t.TempDir()
			path := way.path(dir)
			way.rotate(t, dir, path, "Bearer one", 1)
			addr, last := authServer(t)
			clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			log := &eventstest.Logs{}
			files := newCheckFiles(clock.Now, zerolog.New(log), recheck, testCredentialDirs(t))
			tg := target(t, "http", addr, func(k *config.Check) { k.HeadersFile = map[string]string{"Authorization": path} })
			c, err := newChecker(tg, newSharedTransports(), files)
			if err != nil {
				t.Fatal(err)
			}
			check := func() Outcome {
				t.Helper()
				return timed(context.Background(), c, time.Second, time.Now)
			}
			// sends polls, a recheck apart, until the server sees want.
			sends := func(want string) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); ; clock.advance(recheck) {
					if o := check(); !o.OK {
						t.Fatalf("check: %+v", o)
					}
					if last() == want {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("the server got Authorization %q, want %q", last(), want)
					}
				}
			}
			sends("Bearer one")
			way.rotate(t, dir, path, "Bearer two", 2)
			sends("Bearer two")
			if n := log.Count("check file changed: its checks use what it holds now"); n != 1 {
				t.Errorf("logged the change %d times, want once", n)
			}
			for i, broken := range way.breaks {
				broken(t, dir, path, i)
				for range 3 {
					clock.advance(recheck)
					if o := check(); !o.OK || last() != "Bearer two" {
						t.Fatalf("after a broken rotation (%d): %+v, Authorization %q, want the last value read", i, o, last())
					}
				}
			}
			if n := log.Count("check file not read again: its checks keep what it held"); n != 1 {
				t.Errorf("logged the broken file %d times, want once:\n%s", n, log.String())
			}
			if strings.Contains(log.String(), "Bearer") {
				t.Errorf("the log holds the credential:\n%s", log.String())
			}
			way.rotate(t, dir, path, "Bearer three", 3)
			sends("Bearer three")
		})
	}
}

// rewrite truncates the file at path and writes s into it, as an editor that saves in place
// does.
func rewrite(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A header's file missing when the checks are built fails them, naming it, until it appears: then
// it is used within a recheck, without another configuration.
func TestAHeaderFileMissingAtFirstIsUsedOnceItAppears(t *testing.T) {
	const recheck = time.Second
	path := filepath.Join(t.TempDir(), "auth")
	addr, last := authServer(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	files := newCheckFiles(clock.Now, zerolog.New(zerolog.NewTestWriter(t)), recheck, testCredentialDirs(t))
	tg := target(t, "http", addr, func(k *config.Check) { k.HeadersFile = map[string]string{"Authorization": path} })
	c, err := newChecker(tg, newSharedTransports(), files)
	if err != nil {
		t.Fatal(err)
	}
	o := timed(context.Background(), c, time.Second, time.Now)
	if want := "check.headers_file.Authorization: open " + path + ": no such file or directory"; o.OK || o.Class != ClassError || o.Err != want {
		t.Fatalf("check without the file: %+v, want class error %q", o, want)
	}
	writeRenamed(t, path, "Bearer late")
	for deadline := time.Now().Add(5 * time.Second); ; clock.advance(recheck) {
		if o := timed(context.Background(), c, time.Second, time.Now); o.OK && last() == "Bearer late" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server got Authorization %q, want the file's", last())
		}
	}
}

// Each configuration's checks read their files afresh, at once: nothing read for the one before
// is kept for them, however recently it was looked at.
func TestANewConfigurationReadsTheFilesAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth")
	writeRenamed(t, path, "Bearer one")
	addr, last := authServer(t)
	t0 := time.Unix(1_700_000_000, 0)
	cfg := testConfig(t, `
  - name: shop
    fqdn: shop.demo.test
    check: {type: http, headers_file: {Authorization: `+path+`}}
    pools: [{name: west, endpoints: [{name: a, address: "`+addr+`"}, {name: b, address: "`+addr+`"}]}]
`)
	w := &worker{o: Options{Clock: &fakeClock{now: t0}, CredentialDirs: testCredentialDirs(t)}, log: zerolog.New(zerolog.NewTestWriter(t)), transports: newSharedTransports()}
	for _, want := range []string{"Bearer one", "Bearer two"} {
		writeRenamed(t, path, want)
		q := w.build(cfg, t0, nil)
		for _, e := range q.e {
			if o := timed(context.Background(), e.s.c, time.Second, time.Now); !o.OK || last() != want {
				t.Fatalf("check of %s: %+v, Authorization %q, want %q", e.s.key, o, last(), want)
			}
		}
	}
}

// What a tcp check sends from a file, rotated while the checks run, is sent within a recheck.
func TestARotatedSendFileIsSentWithinARecheck(t *testing.T) {
	const recheck = time.Second
	path := filepath.Join(t.TempDir(), "redis-auth")
	writeRenamed(t, path, "AUTH one\r\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	got := make(chan string, 100)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			got <- line
			_, _ = conn.Write([]byte("+OK\r\n"))
			_ = conn.Close()
		}
	}()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	files := newCheckFiles(clock.Now, zerolog.New(zerolog.NewTestWriter(t)), recheck, testCredentialDirs(t))
	tg := target(t, "tcp", ln.Addr().String(), func(k *config.Check) { k.SendFile, k.Expect = path, "+OK" })
	c, err := newChecker(tg, newSharedTransports(), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AUTH one\r\n", "AUTH two\r\n"} {
		writeRenamed(t, path, want)
		for deadline := time.Now().Add(5 * time.Second); ; clock.advance(recheck) {
			if o := timed(context.Background(), c, time.Second, time.Now); !o.OK {
				t.Fatalf("check: %+v", o)
			}
			if line := <-got; line == want {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("the server got %q, want %q", line, want)
			}
		}
	}
}

// Whoever applies a configuration names a check's files; the prober's operator names the
// directories they may be in. A file outside them (a service account's token, an nkey seed,
// /etc/hostname), or led out of them by a symlink or "..", is never read, so never sent: the
// check fails, saying why, and the prober logs it once.
func TestACheckFileOutsideTheCredentialDirectoriesIsNeverRead(t *testing.T) {
	root := t.TempDir()
	creds, outside := filepath.Join(root, "creds"), filepath.Join(root, "outside")
	for _, d := range []string{creds, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	token := filepath.Join(outside, "token")
	writeRenamed(t, token, "stolen-token")
	if err := os.Symlink(token, filepath.Join(creds, "escape")); err != nil {
		t.Fatal(err)
	}
	dirs, err := config.NewCredentialDirs(creds)
	if err != nil {
		t.Fatal(err)
	}
	const notIn = " is not in a credential directory of this process (%s): allow its directory with --credential-dir or $DETOUR_CREDENTIAL_DIRS where the process runs"
	for _, c := range []struct{ path, why string }{
		{token, token + fmt.Sprintf(notIn, creds)},
		{creds + "/../outside/token", creds + "/../outside/token" + fmt.Sprintf(notIn, creds)},
		{filepath.Join(creds, "escape"), filepath.Join(creds, "escape") + " leads, through a symlink, out of the credential directories of this process (" + creds + "): not in a credential directory"},
	} {
		addr, last := authServer(t)
		log := &eventstest.Logs{}
		clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		files := newCheckFiles(clock.Now, zerolog.New(log), time.Second, dirs)
		for _, tg := range []Target{
			target(t, "http", addr, func(k *config.Check) { k.HeadersFile = map[string]string{"Authorization": c.path} }),
			target(t, "tcp", addr, func(k *config.Check) { k.SendFile = c.path }),
		} {
			ck, err := newChecker(tg, newSharedTransports(), files)
			if err != nil {
				t.Fatal(err)
			}
			want := "check.headers_file.Authorization: " + c.why
			if tg.Check.Type == config.CheckTCP {
				want = "check.send_file: " + c.why
			}
			for range 2 {
				if o := timed(context.Background(), ck, time.Second, time.Now); o.OK || o.Class != ClassError || o.Err != want {
					t.Errorf("%s check of %s: %+v, want class error %q", tg.Check.Type, c.path, o, want)
				}
				clock.advance(time.Second)
			}
		}
		if got := last(); got != "" {
			t.Errorf("%s: the server got Authorization %q", c.path, got)
		}
		if n := log.Count("check file refused: not in a credential directory"); n != 2 {
			t.Errorf("%s: logged the refusal %d times, want once for each kind of value:\n%s", c.path, n, log.String())
		}
		if strings.Contains(log.String(), "stolen") {
			t.Errorf("the log holds what the file holds:\n%s", log.String())
		}
	}
}

// A credential rewritten in place (truncated, then written, perhaps in more than one write)
// can be read between the writes. What the checks send stays what the file held before until
// the file has stayed the same for a moment: they never send it empty or cut short.
func TestACredentialRewrittenInPlaceIsNotSentHalfWritten(t *testing.T) {
	const recheck = time.Second
	path := filepath.Join(t.TempDir(), "auth")
	rewrite(t, path, "Bearer one")
	addr, last := authServer(t)
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	log := &eventstest.Logs{}
	files := newCheckFiles(clock.Now, zerolog.New(log), recheck, testCredentialDirs(t))
	tg := target(t, "http", addr, func(k *config.Check) { k.HeadersFile = map[string]string{"Authorization": path} })
	c, err := newChecker(tg, newSharedTransports(), files)
	if err != nil {
		t.Fatal(err)
	}
	sends := func(when string) string {
		t.Helper()
		if o := timed(context.Background(), c, time.Second, time.Now); !o.OK {
			t.Fatalf("check %s: %+v", when, o)
		}
		return last()
	}
	if got := sends("at first"); got != "Bearer one" {
		t.Fatalf("the server got %q, want %q", got, "Bearer one")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, part := range []string{"", "Bear", "er t"} {
		if _, err := f.WriteString(part); err != nil {
			t.Fatal(err)
		}
		clock.advance(recheck)
		if got := sends("while the file is written"); got != "Bearer one" {
			t.Fatalf("after the write of %q, the server got %q, want the value before: %q", part, got, "Bearer one")
		}
	}
	if _, err := f.WriteString("wo"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); sends("after the file is written") != "Bearer two"; clock.advance(recheck) {
		if time.Now().After(deadline) {
			t.Fatalf("the server got %q, want %q", last(), "Bearer two")
		}
	}
	if n := log.Count("check file not read again: its checks keep what it held"); n != 0 {
		t.Errorf("a file being written was logged as broken %d times:\n%s", n, log.String())
	}
}
