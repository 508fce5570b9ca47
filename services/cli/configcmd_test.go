package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

const planDoc = `
zones: [{name: demo.test}]
apps:
  - name: shop
    fqdn: shop.demo.test
    check: {type: tcp, interval: 1s, timeout: 1s, jitter: 100ms, stale_after: 3s}
    pools:
      - {name: west, endpoints: [{address: "127.0.0.11:80"}]}
      - {name: east, endpoints: [{address: "127.0.0.12:80"}]}
`

// startBare runs JetStream without Detour's streams, which `detour apply` creates on files. It
// starts none rather than deleting those eventstest.Start makes: the server cleans up after a
// deleted stream in a goroutine of its own, which removed the account's empty streams directory
// while the apply made it again (mkdir …/jetstream/$G/streams/PROBES: no such file or directory).
func startBare(t *testing.T) *eventstest.Server {
	return eventstest.StartWith(t, eventstest.Options{NoStreams: true})
}

func writeFile(t *testing.T, name, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestApplyWithAStaleExpectedVersionIsRefusedAndChangesNothing(t *testing.T) {
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	v2 := writeFile(t, "v2.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 2s", 1))
	v3 := writeFile(t, "v3.yaml", strings.Replace(planDoc, "stale_after: 3s", "stale_after: 5s", 1))

	if code, out, errOut := run("apply", v1, "--nats", s.URL, "--expect-version", "0", "-m", "first"); code != 0 || !strings.Contains(out, "as version 1:") {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	// Ana plans against version 1; Bo applies version 2 in between; Ana's apply is refused.
	code, out, errOut := run("plan", v3, "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "--expect-version 1") {
		t.Fatalf("plan: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("apply", v2, "--nats", s.URL, "-m", "slower checks"); code != 0 || !strings.Contains(out, "as version 2:") {
		t.Fatalf("second apply: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = run("apply", v3, "--nats", s.URL, "--expect-version", "1")
	if code != 1 || !strings.Contains(errOut, "expected version 1, but version 2 is active") {
		t.Fatalf("stale apply: exit %d, want 1 and a conflict naming version 2:\n%s", code, errOut)
	}
	code, out, _ = run("config", "get", "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "# version 2, applied ") || !strings.Contains(out, `: "slower checks"`) || !strings.Contains(out, "interval: 2s") {
		t.Errorf("after the refused apply the active version is not version 2:\n%s", out)
	}
}

// A loaded or distant cluster answers each request late: plan, apply --expect-version and
// config get wait for it as the rest of the command does, where their reads of the active
// version gave up after a second and an apply was refused with no version named. The three
// run at once, as three operators' would: none of them changes what the others read.
func TestPlanApplyAndConfigGetWaitForAClusterThatAnswersAfterASecond(t *testing.T) {
	t.Parallel() // waits on the cluster's silence or a slow link; asserts no bound that other tests' load could break
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	v2 := writeFile(t, "v2.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 2s", 1))
	if code, out, errOut := run("apply", v1, "--nats", s.URL, "-m", "first"); code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	link := eventstest.NewSlowLink(t, s.URL)
	link.Delay(1100*time.Millisecond, 0)

	var wg sync.WaitGroup
	wg.Go(func() {
		if code, out, errOut := run("plan", v2, "--nats", link.URL); code != 0 || !strings.Contains(out, "--expect-version 1") {
			t.Errorf("plan: exit %d, want 0 and --expect-version 1:\n%s%s", code, out, errOut)
		}
	})
	wg.Go(func() {
		if code, _, errOut := run("apply", v2, "--nats", link.URL, "--expect-version", "0"); code != 1 || !strings.Contains(errOut, "expected version 0, but version 1 is active") {
			t.Errorf("stale apply: exit %d, want 1 and a conflict naming version 1:\n%s", code, errOut)
		}
	})
	wg.Go(func() {
		if code, out, errOut := run("config", "get", "--nats", link.URL); code != 0 || !strings.Contains(out, "# version 1, applied ") {
			t.Errorf("config get: exit %d, want 0 and version 1:\n%s%s", code, out, errOut)
		}
	})
	wg.Wait()
}

func TestConfigHistoryAndGetShowEveryVersionWhoAppliedItAndWhy(t *testing.T) {
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	v2 := writeFile(t, "v2.yaml", strings.Replace(planDoc, "interval: 1s", "interval: 2s", 1))
	for _, args := range [][]string{{"apply", v1, "-m", "first"}, {"apply", v2, "-m", "slower checks"}} {
		if code, out, errOut := run(append(args, "--nats", s.URL)...); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	code, out, errOut := run("config", "history", "--nats", s.URL)
	if code != 0 {
		t.Fatalf("history: exit %d\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "VERSION") ||
		!strings.HasPrefix(lines[1], "1 ") || !strings.HasSuffix(lines[1], "first") ||
		!strings.HasPrefix(lines[2], "2 ") || !strings.HasSuffix(lines[2], "slower checks") {
		t.Errorf("history:\n%s", out)
	}
	code, out, _ = run("config", "get", "--version", "1", "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "# version 1, applied ") || !strings.Contains(out, planDoc) {
		t.Errorf("config get --version 1:\n%s", out)
	}
	if code, _, errOut := run("config", "get", "--version", "9", "--nats", s.URL); code != 2 || !strings.Contains(errOut, "configuration version 9: no such configuration version") {
		t.Errorf("config get --version 9: exit %d, want 2 and no such version:\n%s", code, errOut)
	}
}

func TestPlanPrintsTheChangesAndTheAnswersTheyWouldChange(t *testing.T) {
	s := startBare(t)
	if code, _, errOut := run("apply", writeFile(t, "v1.yaml", planDoc), "--nats", s.URL); code != 0 {
		t.Fatalf("apply: %s", errOut)
	}
	next := strings.Replace(planDoc, `      - {name: west, endpoints: [{address: "127.0.0.11:80"}]}`+"\n", "", 1) + `
  - name: blog
    fqdn: blog.demo.test
    pools: [{name: main, endpoints: [{address: "127.0.0.13:80"}]}]
`
	code, out, errOut := run("plan", writeFile(t, "v2.yaml", next), "--nats", s.URL)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errOut)
	}
	want := `  - apps[shop].pools[west]
  + apps[blog]
answers now:
  + blog.demo.test. A: 127.0.0.13
  ~ shop.demo.test. A: 127.0.0.11 → 127.0.0.12
1 to add, 1 to remove, 0 to change; apply exactly this with: detour apply `
	if !strings.Contains(out, want) {
		t.Errorf("plan:\n%s\nwant it to contain:\n%s", out, want)
	}
	if code, _, errOut := run("plan", writeFile(t, "bad.yaml", "zones: []\napps: []\nbogus: 1\n"), "--nats", s.URL); code != 2 || !strings.Contains(errOut, "bogus") {
		t.Errorf("plan of a bad file: exit %d, want 2 naming the problem:\n%s", code, errOut)
	}
}

// detour plan warns as detour check and apply do, with the line: an endpoint whose address's
// spelling gave it another name in an earlier Detour is the change an upgrade makes that no
// diff shows, the running version being read with the new spelling too. Before, plan printed
// no warning at all.
func TestPlanWarnsAsCheckAndApplyDo(t *testing.T) {
	s := startBare(t)
	v1 := strings.Replace(planDoc, `"127.0.0.11:80"`, `"127.0.0.11:080"`, 1)
	if code, _, errOut := run("apply", writeFile(t, "v1.yaml", v1), "--nats", s.URL); code != 0 {
		t.Fatalf("apply: %s", errOut)
	}
	path := writeFile(t, "v2.yaml", v1)
	code, out, errOut := run("plan", path, "--nats", s.URL)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errOut)
	}
	want := path + `:8: warning: apps[0].pools[0].endpoints[0].address: "127.0.0.11:080" is 127.0.0.11:80, named 127-0-0-11_80; an earlier Detour named it 127-0-0-11_080, under which its state and overrides stay: set name: 127-0-0-11_080 to keep them, or write the address 127.0.0.11:80 to take the new name`
	if !strings.Contains(errOut, want) {
		t.Errorf("plan: stderr\n%s\nwant it to contain:\n%s\n(stdout:\n%s)", errOut, want, out)
	}
}

func TestApplyBoundsProbesAsConfiguredAndWarnsWhenTheRateFillsThemFirst(t *testing.T) {
	s := startBare(t)
	// Two endpoints checked every second from one region: 2 results/s, 1 KiB/s.
	roomy := writeFile(t, "roomy.yaml", planDoc+"streams:\n  probes: {max_age: 6h, max_bytes: 1GiB}\n")
	tight := writeFile(t, "tight.yaml", planDoc+"streams:\n  probes: {max_age: 6h, max_bytes: 1MiB}\n")

	code, out, errOut := run("apply", roomy, "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "PROBES keeps probe results for 6h0m0s, within 1GiB (2 results/s fill it in 291h16m16s)\n") || errOut != "" {
		t.Fatalf("apply with room: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("apply", tight, "--nats", s.URL)
	if code != 0 || !strings.Contains(out, "within 1MiB (2 results/s fill it in 17m4s)") ||
		!strings.Contains(errOut, "warning: PROBES fills in 17m4s, before its max_age 6h0m0s: results are kept for 17m4s") {
		t.Fatalf("apply of a tight bound: exit %d\n%s%s", code, out, errOut)
	}
	c := s.Stream(t, events.StreamProbes).CachedInfo().Config
	if c.MaxBytes != 1<<20 || c.MaxAge != 6*time.Hour {
		t.Errorf("PROBES bounded to %d bytes and %s, want 1MiB and 6h", c.MaxBytes, c.MaxAge)
	}
}

func TestApplyRefusedForAStaleVersionLeavesTheStreamsBoundsAsTheyWere(t *testing.T) {
	s := startBare(t)
	roomy := writeFile(t, "roomy.yaml", planDoc+"streams:\n  probes: {max_age: 6h, max_bytes: 1GiB}\n")
	tight := writeFile(t, "tight.yaml", planDoc+"streams:\n  probes: {max_age: 2h, max_bytes: 1MiB}\n")
	if code, out, errOut := run("apply", roomy, "--nats", s.URL); code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("apply", tight, "--nats", s.URL, "--expect-version", "0")
	if code != 1 || !strings.Contains(errOut, "expected version 0, but version 1 is active") {
		t.Fatalf("stale apply: exit %d, want 1 and a conflict:\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "PROBES keeps") {
		t.Errorf("a refused apply printed the bounds of its document as the stream's:\n%s", out)
	}
	c := s.Stream(t, events.StreamProbes).CachedInfo().Config
	if c.MaxBytes != 1<<30 || c.MaxAge != 6*time.Hour {
		t.Errorf("after the refused apply PROBES is bounded to %s and %s, want version 1's 1GiB and 6h", config.ByteSize(c.MaxBytes), c.MaxAge)
	}
}

func TestApplyOfBoundsJetStreamRefusesAppliesNothing(t *testing.T) {
	s := startBare(t)
	v1 := writeFile(t, "v1.yaml", planDoc)
	huge := writeFile(t, "huge.yaml", planDoc+"streams:\n  probes: {max_bytes: 8000TiB}\n")
	if code, out, errOut := run("apply", v1, "--nats", s.URL); code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("apply", huge, "--nats", s.URL)
	if code != 1 || !strings.Contains(errOut, "PROBES") || strings.Contains(out, "applied") {
		t.Fatalf("apply of bounds JetStream cannot reserve: exit %d, want 1 naming PROBES and nothing applied:\n%s%s", code, out, errOut)
	}
	if code, out, _ := run("config", "get", "--nats", s.URL); code != 0 || !strings.Contains(out, "# version 1, applied ") {
		t.Errorf("after the refused apply the active version is not version 1:\n%s", out)
	}
}

func TestApplyOfADocumentLargerThanNATSTakesLeavesTheStreamsBoundsAsTheyWere(t *testing.T) {
	s := startBare(t)
	roomy := writeFile(t, "roomy.yaml", planDoc+"streams:\n  probes: {max_age: 6h, max_bytes: 1GiB}\n")
	big := writeFile(t, "big.yaml", planDoc+"streams:\n  probes: {max_age: 2h, max_bytes: 1MiB}\n# "+strings.Repeat("x", int(s.Conn.MaxPayload()))+"\n")
	if code, out, errOut := run("apply", roomy, "--nats", s.URL); code != 0 {
		t.Fatalf("first apply: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("apply", big, "--nats", s.URL)
	if code != 1 || !strings.Contains(errOut, "maximum payload") || strings.Contains(out, "applied") {
		t.Fatalf("apply of a document larger than NATS takes: exit %d, want 1 saying so and nothing applied:\n%s%s", code, out, errOut)
	}
	c := s.Stream(t, events.StreamProbes).CachedInfo().Config
	if c.MaxBytes != 1<<30 || c.MaxAge != 6*time.Hour {
		t.Errorf("after the refused apply PROBES is bounded to %s and %s, want version 1's 1GiB and 6h", config.ByteSize(c.MaxBytes), c.MaxAge)
	}
}
