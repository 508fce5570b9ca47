package up_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/detourdev/detour/services/cli"
	"github.com/detourdev/detour/services/up"
	"github.com/rs/zerolog"
)

// TestTheDemoShowsAnAppFailoverAndAnEdgeFailover runs the commands of the README's "Watch a
// failover" section as they are written, against a demo stack, and compares what they print
// with the output the README shows beneath them:
//
//   - `go run ./services/cmd/detour ARGS` runs the detour command in process; `query --watch
//     NAME` makes NAME the watched name, and each `#   HH:MM:SS.mmm  ANSWER` line that follows
//     must become what `detour query NAME` prints, within a few seconds;
//   - `curl [-X POST] [-H …] URL` makes the request; a `#   TEXT` line beneath it must become
//     the first line of the answer;
//   - other output lines must appear, in order and timestamps aside, in the command's output.
//
// The stack binds its DNS server, NATS and the demo control on free ports, so those addresses
// (127.0.0.1:5353, nats://127.0.0.1:4222 also as $DETOUR_NATS, 127.0.0.1:8090) are replaced by
// the bound ones; the
// backends and edges use the README's addresses. `go tool nats`, `dig` and `export` lines are
// not run.
func TestTheDemoShowsAnAppFailoverAndAnEdgeFailover(t *testing.T) {
	var out strings.Builder
	dataDir := t.TempDir()
	st := startStack(t, up.Options{
		DNSAddr: "127.0.0.1:0", DataDir: dataDir, NATSPort: -1, DemoControlAddr: "127.0.0.1:0", Out: &out,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	for _, want := range []string{"curl -X POST http://127.0.0.11:8081/-/fail", "query --server " + st.DNSAddr + " --watch shop.demo.test",
		"go tool nats --server " + st.NATSURL + " --nkey " + st.NATSCredentials.File + " stream view STATE",
		"DETOUR_NATS_NKEY=" + st.NATSCredentials.File} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the instructions lack %q:\n%s", want, out.String())
		}
	}
	token := regexp.MustCompile(`Authorization: Bearer (\S+?)'`).FindStringSubmatch(out.String())
	control := regexp.MustCompile(`http://(\S+)/edges/`).FindStringSubmatch(out.String())
	if token == nil || control == nil {
		t.Fatalf("the instructions lack the demo control's address and token:\n%s", out.String())
	}
	t.Setenv("DETOUR_NATS_NKEY", st.NATSCredentials.File)
	t.Setenv("DETOUR_NATS", st.NATSURL)
	d := &demoRun{t: t, replace: strings.NewReplacer(
		"127.0.0.1:5353", st.DNSAddr, "nats://127.0.0.1:4222", st.NATSURL, "127.0.0.1:8090", control[1], "$TOKEN", token[1])}

	blocks := readmeBlocks(t, "Watch a failover in one minute")
	if len(blocks) < 3 {
		t.Fatalf("the README's demo has %d command blocks, want at least 3", len(blocks))
	}
	for _, b := range blocks {
		d.runBlock(b)
	}
	if d.commands < 10 || d.checked < 8 {
		t.Errorf("ran %d commands and checked %d lines of output: the README's demo lost its steps?", d.commands, d.checked)
	}
}

// readmeBlocks returns the ```sh blocks of the README section titled title.
func readmeBlocks(t *testing.T, title string) [][]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks [][]string
	for _, part := range strings.Split(section, "```sh\n")[1:] {
		code, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, strings.Split(strings.TrimRight(code, "\n"), "\n"))
	}
	return blocks
}

type demoRun struct {
	t        *testing.T
	replace  *strings.Replacer
	watched  string
	commands int
	checked  int
}

var (
	watchLine  = regexp.MustCompile(`^#   \d\d:\d\d:\d\d\.\d{3}  (.*?)(\s{2,}\(.*\))?$`)
	outputLine = regexp.MustCompile(`^#   (.*?)(\s{2,}\(.*\))?$`)
	stamps     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z|\d\d:\d\d:\d\d\.\d{3}`)
)

// runBlock runs one block's commands, each with the output lines that follow it.
func (d *demoRun) runBlock(lines []string) {
	for i := 0; i < len(lines); i++ {
		cmd, _, _ := strings.Cut(lines[i], "  #")
		cmd = strings.TrimSpace(cmd)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		var want []string
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#   ") {
			i++
			want = append(want, lines[i])
		}
		d.run(cmd, want)
	}
}

// run runs one command; of the lines beneath it, watch lines are about the watched name's
// answer after the command, the others are the command's own output.
func (d *demoRun) run(cmd string, lines []string) {
	var want, watch []string
	for _, l := range lines {
		if watchLine.MatchString(l) {
			watch = append(watch, l)
		} else {
			want = append(want, l)
		}
	}
	d.runCommand(cmd, want)
	d.expectWatch(watch)
}

func (d *demoRun) runCommand(cmd string, want []string) {
	t := d.t
	t.Helper()
	args := fields(d.replace.Replace(cmd))
	switch {
	case strings.HasPrefix(cmd, "go run ./services/cmd/detour "):
		d.commands++
		args = args[3:]
		if args[0] == "query" && hasFlag(args, "--watch") {
			d.watched = lastArg(args)
			return
		}
		d.expectOutput(cmd, args, want)
	case args[0] == "curl":
		d.commands++
		d.curl(args[1:], want)
	case args[0] == "go" && len(args) > 2 && args[2] == "nats", args[0] == "dig", args[0] == "export", strings.HasPrefix(args[0], "TOKEN="):
		// Not run: see the test's comment.
	default:
		t.Errorf("the README's demo runs %q, which this test does not know how to run", cmd)
	}
}

// expectWatch waits for the watched name's answer to become each of the watch lines in turn.
func (d *demoRun) expectWatch(want []string) {
	t := d.t
	t.Helper()
	for _, w := range want {
		m := watchLine.FindStringSubmatch(w)
		if d.watched == "" {
			t.Fatalf("%q: no query --watch before it", w)
		}
		d.checked++
		got := ""
		eventstest.Eventually(t, 5*time.Second, func() bool {
			got = d.detour("query", "--server", d.replace.Replace("127.0.0.1:5353"), d.watched)
			return got == m[1]
		}, "detour query %s prints %q, want %q (README: %q)", d.watched, lazy{&got}, m[1], w)
	}
}

// expectOutput runs a detour command and finds each wanted line in its output, in order.
func (d *demoRun) expectOutput(cmd string, args, want []string) {
	t := d.t
	t.Helper()
	var got string
	eventstest.Eventually(t, 5*time.Second, func() bool {
		got = d.detour(args...)
		rest := stamps.ReplaceAllString(got, "T")
		for _, w := range want {
			line := stamps.ReplaceAllString(outputLine.FindStringSubmatch(w)[1], "T")
			i := strings.Index(rest, line)
			if i < 0 {
				return false
			}
			rest = rest[i+len(line):]
		}
		return true
	}, "%s printed:\n%s\nwant, in order (timestamps aside):\n%s", cmd, lazy{&got}, strings.Join(want, "\n"))
	d.checked += len(want)
}

func (d *demoRun) detour(args ...string) string {
	var out, errOut bytes.Buffer
	if code := cli.Main(args, &out, &errOut); code != 0 {
		return "exit " + strconv.Itoa(code) + ": " + errOut.String()
	}
	return strings.TrimRight(out.String(), "\n")
}

// curl makes the request the README's curl line makes; a wanted line must become the first
// line of the answer.
func (d *demoRun) curl(args, want []string) {
	t := d.t
	t.Helper()
	method, url := http.MethodGet, ""
	header := http.Header{}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-X":
			i++
			method = args[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ": ")
			header.Set(k, v)
		default:
			url = args[i]
		}
	}
	do := func() (int, string) {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return 0, "error: " + err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		first, _, _ := strings.Cut(string(b), "\n")
		return resp.StatusCode, first
	}
	if len(want) == 0 {
		if code, body := do(); code/100 != 2 {
			t.Errorf("curl %s: %d %s", strings.Join(args, " "), code, body)
		}
		return
	}
	for _, w := range want {
		line := outputLine.FindStringSubmatch(w)[1]
		d.checked++
		got := ""
		eventstest.Eventually(t, 5*time.Second, func() bool {
			_, got = do()
			return got == line
		}, "curl %s answers %q, want %q", strings.Join(args, " "), lazy{&got}, line)
	}
}

// fields splits a shell command line at spaces, keeping quoted parts whole.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0 && c == ' ':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

func lastArg(args []string) string {
	for i := len(args) - 1; i >= 0; i-- {
		if !strings.HasPrefix(args[i], "-") {
			return args[i]
		}
	}
	return ""
}

// lazy prints the string it points to when the message is written, after the last attempt.
type lazy struct{ s *string }

func (l lazy) String() string { return *l.s }
