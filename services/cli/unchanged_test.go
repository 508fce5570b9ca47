package cli_test

import (
	"os"
	"strings"
	"testing"
)

// A CI job that applies again after a lost answer, or on every run, stores the document once:
// applying the active version's document again (any --expect-version, any -m) is a no-op that
// says so, exit 0. What is compared is the document as stored, byte for byte: a whitespace or
// comment change is a new version (config get shows it), and a secret file the document names is
// not part of it (the roles read the file themselves), so rewriting it stores nothing.
func TestApplyingTheActiveDocumentAgainStoresNoNewVersionAndSaysSo(t *testing.T) {
	s := startBare(t)
	key := writeFile(t, "push.key", "c2VjcmV0LW9uZQ==\n")
	doc := strings.Replace(planDoc, "zones: [{name: demo.test}]",
		`zones: [{name: demo.test, push: {server: "127.0.0.1:53", tsig: {name: k, algorithm: hmac-sha256, secret_file: `+key+`}}}]`, 1)
	v1 := writeFile(t, "v1.yaml", doc)
	if code, out, errOut := run("apply", v1, "--nats", s.URL, "-m", "first"); code != 0 || !strings.Contains(out, "as version 1:") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	unchanged := func(what string, args ...string) {
		t.Helper()
		code, out, errOut := run(append([]string{"apply", v1, "--nats", s.URL}, args...)...)
		if code != 0 || !strings.Contains(out, "unchanged: version 1 is already this document") || strings.Contains(out, "as version 2") {
			t.Errorf("%s: exit %d, want 0 and unchanged: version 1:\n%s%s", what, code, out, errOut)
		}
	}
	unchanged("the same file again", "-m", "retry")
	unchanged("with --expect-version 1", "--expect-version", "1")
	unchanged("with the stale --expect-version 0 of a retry whose first answer was lost", "--expect-version", "0")
	if err := os.WriteFile(key, []byte("c2VjcmV0LXR3bw==\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged("after the secret file it names changed")

	for i, c := range []struct{ what, doc string }{
		{"a blank line added", doc + "\n"},
		{"a comment added", "# east first from now on\n" + doc + "\n"},
	} {
		code, out, errOut := run("apply", writeFile(t, "next.yaml", c.doc), "--nats", s.URL)
		if want := "as version " + string(rune('2'+i)) + ":"; code != 0 || !strings.Contains(out, want) {
			t.Errorf("%s: exit %d, want 0 and %q:\n%s%s", c.what, code, want, out, errOut)
		}
	}
	code, out, errOut := run("config", "history", "--nats", s.URL)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 4 {
		t.Errorf("history: exit %d, want a header and 3 versions:\n%s%s", code, out, errOut)
	}
}

// POST /v1/config/apply shares the path: the active document applied again through the API
// is a no-op too, and detour apply --api says so.
func TestApplyThroughTheAPIOfTheActiveDocumentSaysUnchanged(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", token)
	code, out, errOut := run("apply", writeFile(t, "v1.yaml", planDoc), "--api", url)
	if code != 0 || !strings.Contains(out, "unchanged: version 1 is already this document") {
		t.Fatalf("apply: exit %d, want 0 and unchanged: version 1:\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("config", "history", "--api", url)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 {
		t.Errorf("history: exit %d, want a header and version 1 alone:\n%s%s", code, out, errOut)
	}
}

// An operator who rotated a webhook's url_file (read by a controller only at start and with a
// new version) stores the active document again with --force, directly or through the API:
// a new version, which the controllers follow, re-reading the file. A stale --expect-version
// is still refused.
func TestApplyWithForceStoresTheActiveDocumentAgainAsANewVersion(t *testing.T) {
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	if code, out, errOut := run("apply", v1, "--nats", s.URL); code != 0 || !strings.Contains(out, "as version 1:") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("apply", v1, "--nats", s.URL, "--force", "-m", "url_file rotated"); code != 0 || !strings.Contains(out, "as version 2:") {
		t.Errorf("apply --force: exit %d, want 0 and as version 2:\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("apply", v1, "--nats", s.URL, "--force", "--expect-version", "1"); code == 0 || !strings.Contains(errOut, "expected version 1, but version 2 is active") {
		t.Errorf("apply --force with a stale --expect-version: exit %d, want a conflict:\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("config", "history", "--nats", s.URL)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 {
		t.Errorf("history: exit %d, want a header and 2 versions:\n%s%s", code, out, errOut)
	}
}

// POST /v1/config/apply?force=true stores the active document again too, and detour apply
// --api --force asks for it.
func TestApplyThroughTheAPIWithForceStoresTheActiveDocumentAgain(t *testing.T) {
	url, token := startAPI(t)
	t.Setenv("DETOUR_TOKEN", token)
	code, out, errOut := run("apply", writeFile(t, "v1.yaml", planDoc), "--api", url, "--force")
	if code != 0 || !strings.Contains(out, "as version 2 by api/") {
		t.Fatalf("apply --force: exit %d, want 0 and as version 2:\n%s%s", code, out, errOut)
	}
}
