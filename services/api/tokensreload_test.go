package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/api"
	"github.com/rs/zerolog"
)

// reloadWithin is how long a change to the tokens file may take to be served.
const reloadWithin = 2 * time.Second

// syncBuffer is a log that the API writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// followingTokens starts an API that serves the tokens file at path, logging to log.
func followingTokens(t *testing.T, path string, log *syncBuffer) *fixture {
	t.Helper()
	ns := eventstest.Start(t)
	srv, err := api.Listen(api.Options{JS: ns.JS, Config: eventstest.Config(t, doc), Addr: "127.0.0.1:0", TokensPath: path,
		Log: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, "api-tokens-file", srv.Run)
	return &fixture{ns: ns, srv: srv, url: "http://" + srv.Addr()}
}

// A token found leaked is removed from the tokens file, and the API refuses it within a second or
// two, as Route 53 or Cloudflare stop taking a revoked key: the API read the file only when it
// started, so the leaked token worked until the controller restarted. A token added to the file
// is taken likewise, and the others go on working.
func TestATokenRemovedFromTheFileIsRefusedAndOneAddedTakenWithoutARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	leaked, err := api.AddToken(path, "leaked", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := api.AddToken(path, "grafana", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	f := followingTokens(t, path, &syncBuffer{})
	for _, tok := range []string{leaked, kept} {
		if code, body := f.do(t, "GET", "/v1/apps", tok, ""); code != http.StatusOK {
			t.Fatalf("a token of the file at start: %d %s, want 200", code, body)
		}
	}

	if err := api.RevokeToken(path, "leaked"); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	eventstest.Eventually(t, reloadWithin, func() bool {
		code, body = f.do(t, "GET", "/v1/apps", leaked, "")
		return code == http.StatusUnauthorized
	}, "a token removed from the file is still taken: %d %s", &code, &body)
	if !strings.Contains(body, "an unknown bearer token") {
		t.Errorf("a token removed from the file: %s, want it answered as unknown", body)
	}
	if code, body := f.do(t, "GET", "/v1/apps", kept, ""); code != http.StatusOK {
		t.Errorf("a token left in the file, once another was removed: %d %s, want 200", code, body)
	}

	added, err := api.AddToken(path, "ci", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Eventually(t, reloadWithin, func() bool {
		code, body = f.do(t, "GET", "/v1/apps", added, "")
		return code == http.StatusOK
	}, "a token added to the file is not taken: %d %s", &code, &body)
}

// A tokens file saved with a mistake neither locks everyone out nor is half applied: the API
// keeps the tokens it had, logs one error naming the file and the problem (not a secret the
// operator pasted where the scope goes), and takes the file once it is mended.
func TestATokensFileThatDoesNotParseLeavesTheTokensAsTheyWere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	ops, err := api.AddToken(path, "ops", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := api.AddToken(path, "ci", api.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	f := followingTokens(t, path, log)
	if code, body := f.do(t, "GET", "/v1/apps", ci, ""); code != http.StatusOK {
		t.Fatalf("a token of the file at start: %d %s, want 200", code, body)
	}

	// ci's line goes, and a line with the new token pasted as its scope comes: the file does not
	// parse, so neither change is made.
	pasted := "detour_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	h := sha256.Sum256([]byte(pasted))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opsLine, _, _ := strings.Cut(string(b), "\n")
	bad := opsLine + "\nrenovate " + pasted + " " + hex.EncodeToString(h[:]) + "\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	const refused = "tokens file refused"
	var got string
	eventstest.Eventually(t, reloadWithin, func() bool {
		got = log.String()
		return strings.Contains(got, refused)
	}, "no error logged for a tokens file that does not parse: %s", &got)
	if !strings.Contains(got, path) || !strings.Contains(got, "line 2: scope: want read or write") || strings.Contains(got, pasted) {
		t.Errorf("the error logged: %s; want it to name %s and line 2's scope, without the secret pasted there", got, path)
	}
	for _, tok := range []string{ops, ci} {
		if code, body := f.do(t, "GET", "/v1/apps", tok, ""); code != http.StatusOK {
			t.Errorf("a token of the last file that parsed, while the file does not: %d %s, want 200", code, body)
		}
	}

	if err := os.WriteFile(path, []byte(opsLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	var body string
	eventstest.Eventually(t, reloadWithin, func() bool {
		code, body = f.do(t, "GET", "/v1/apps", ci, "")
		return code == http.StatusUnauthorized
	}, "the file mended without ci's line, ci's token is still taken: %d %s", &code, &body)
	if code, body := f.do(t, "GET", "/v1/apps", ops, ""); code != http.StatusOK {
		t.Errorf("ops's token, in the mended file: %d %s, want 200", code, body)
	}
	if n := strings.Count(log.String(), refused); n != 1 {
		t.Errorf("the file that did not parse was logged %d times, want once: %s", n, log.String())
	}
}

// The status page's stream lives for hours, its token checked when it opened: one opened with a
// token found leaked went on showing every endpoint's state, reason and votes after the token
// was revoked, for as long as the connection held (a keepalive every 15 s holds it). It ends
// once its token is gone from the file, as a request with it is refused.
func TestAStatusStreamEndsOnceItsTokenIsRevoked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	leaked, err := api.AddToken(path, "leaked", api.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	f := followingTokens(t, path, &syncBuffer{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", f.url+"/status/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "status.example" // as through the proxy in front of it: loopback's needs no token
	req.Header.Set("Authorization", "Bearer "+leaked)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the status stream with a token of the file: %s, want 200", resp.Status)
	}
	stream := bufio.NewReader(resp.Body)
	for {
		line, err := stream.ReadString('\n')
		if err != nil {
			t.Fatalf("the status stream ended before its first event: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}

	if err := api.RevokeToken(path, "leaked"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(stream)
	if err != nil {
		t.Fatalf("the stream of a token revoked went on (%d bytes more) until %v; want it ended once the API took the file", len(rest), err)
	}
}
