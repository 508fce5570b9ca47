//go:build integration

package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// composeProjectPrefix names the compose projects the test starts, followed by the run's
// process id, so that removeLeftovers can take down a dead run's.
const composeProjectPrefix = "detour-it-"

// TestTheREADMEsComposeClusterDoesWhatItSays runs the commands of the first block of the README's
// "Running as a cluster" section, in order, against deployments/compose.yaml with this run's image
// (DETOUR_IMAGE), and holds each to what its comment says:
//
//   - `docker-compose -f deployments/compose.yaml -p detour ARGS` runs ARGS on a project of the
//     test's own, taken down at the end as `go tool task compose:down` would;
//   - `dig … NAME  # COMMENT`: NAME's answer must become the address the comment names, the CNAME
//     target it names (a name ending in .demo.test), or, where it names neither, some address;
//   - `curl URL  # … "TEXT"`: the answer must become 200 with TEXT in its body; with the Bearer
//     header, the token is the one `docker-compose … logs controller` shows;
//   - `go tool nats --server URL stream view STATE` reads STATE with the URL's credentials: it
//     must hold the failover just made;
//   - `docker-compose … ps  # every service … healthy`: every service still running reports
//     healthy, apply aside.
//
// `go tool task image` is not run: TestMain built this run's image from the same Dockerfile.
func TestTheREADMEsComposeClusterDoesWhatItSays(t *testing.T) {
	t.Parallel()
	compose := composeCommand(t)
	for _, port := range []string{"14222", "18222", "5354", "8091", "8092", "8093", "8181", "8182"} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
			c.Close()
			t.Skipf("127.0.0.1:%s is taken, which deployments/compose.yaml publishes (is its cluster up? go tool task compose:down)", port)
		}
	}
	blocks := readmeBlocks(t, "Running as a cluster (docker compose)")
	if len(blocks) == 0 {
		fatalf(t, "the README's cluster section has no command block")
	}
	r := &composeRun{t: t, compose: compose, project: composeProjectPrefix + strconv.Itoa(os.Getpid())}
	t.Cleanup(r.down)
	for _, line := range blocks[0] {
		cmd, comment, _ := strings.Cut(line, "  #")
		if cmd = strings.TrimSpace(cmd); cmd != "" {
			r.run(cmd, strings.TrimSpace(comment))
		}
	}
	if r.checked < 10 {
		errorf(t, "checked %d commands: the README's cluster section lost its steps?", r.checked)
	}
}

// removeComposeProject removes the containers and networks of a compose project a dead run left
// (compose labels every one with its project): its network's fixed subnet would keep the next
// run's from starting.
func removeComposeProject(project string) {
	filter := "label=com.docker.compose.project=" + project
	for _, kind := range []struct{ list, rm []string }{
		{[]string{"container", "ls", "-a", "-q"}, []string{"container", "rm", "-f", "-v"}},
		{[]string{"network", "ls", "-q"}, []string{"network", "rm"}},
	} {
		out, _ := exec.Command("docker", append(kind.list, "--filter", filter)...).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			if out, err := exec.Command("docker", append(kind.rm, ids...)...).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "integration: remove compose project %s (docker %s): %v\n%s", project, strings.Join(kind.rm, " "), err, out)
			}
		}
	}
	fmt.Printf("integration: removed compose project %s, left by a run that ended without taking it down\n", project)
}

// readmeBlocks returns the ```sh blocks of the README section titled title, a line each.
func readmeBlocks(t *testing.T, title string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		fatalf(t, "read the README: %v", err)
	}
	_, section, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		fatalf(t, "the README has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks [][]string
	for _, part := range strings.Split(section, "```sh\n")[1:] {
		code, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, strings.Split(strings.TrimRight(code, "\n"), "\n"))
	}
	return blocks
}

// composeCommand is docker-compose where it is installed, else the Docker CLI's compose plugin.
func composeCommand(t *testing.T) []string {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	t.Skip("neither docker-compose nor `docker compose` is installed (Debian: apt-get install docker-compose)")
	return nil
}

type composeRun struct {
	t       *testing.T
	compose []string
	project string
	checked int
	// began is when the cluster was started; its first answer may take a while.
	began time.Time
}

var (
	composeLine = regexp.MustCompile(`^docker-compose -f deployments/compose\.yaml -p detour (.+)$`)
	quoted      = regexp.MustCompile(`"([^"]+)"`)
	ipv4        = regexp.MustCompile(`\b\d+\.\d+\.\d+\.\d+\b`)
	demoName    = regexp.MustCompile(`\b[a-z0-9-]+\.demo\.test\b`)
	natsServer  = regexp.MustCompile(`--server (\S+)`)
	// applyService is the apply service's container in `ps` (docker-compose's NAME_apply_1,
	// the compose plugin's NAME-apply-1).
	applyService = regexp.MustCompile(`^\S+[_-]apply[_-]\d+\s`)
)

// run runs one README command, held to its comment.
func (r *composeRun) run(cmd, comment string) {
	t := r.t
	t.Helper()
	args := strings.Fields(cmd)
	switch m := composeLine.FindStringSubmatch(cmd); {
	case cmd == "go tool task image":
		return // TestMain built this run's image
	case cmd == "go tool task compose:down":
		r.down()
	case m != nil && m[1] == "up -d":
		r.began = time.Now()
		r.dockerCompose("up", "-d")
	case m != nil && m[1] == "ps":
		r.healthy(comment)
	case m != nil:
		r.dockerCompose(strings.Fields(m[1])...)
	case args[0] == "dig":
		r.dig(args, comment)
	case args[0] == "curl":
		r.curl(cmd, comment)
	case len(args) > 2 && args[0] == "go" && args[2] == "nats":
		r.state(cmd)
	default:
		errorf(t, "the README's cluster section runs %q, which this test does not know how to run", cmd)
		return
	}
	r.checked++
}

// within is how long an answer may take to become what the README says: the cluster's first
// answers wait for three JetStream nodes, the configuration and every role to start.
func (r *composeRun) within() time.Duration {
	if time.Since(r.began) < 3*time.Minute {
		return 3 * time.Minute
	}
	return 20 * time.Second
}

// dockerCompose runs the README's docker-compose command on the test's project.
func (r *composeRun) dockerCompose(args ...string) string {
	r.t.Helper()
	out, err := r.composeCmd(args...).CombinedOutput()
	if err != nil {
		fatalf(r.t, "%s %s: %v\n%s", strings.Join(r.compose, " "), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (r *composeRun) composeCmd(args ...string) *exec.Cmd {
	full := append(slices.Clone(r.compose[1:]), append([]string{"-f", filepath.Join(repoRoot(), "deployments", "compose.yaml"), "-p", r.project}, args...)...)
	cmd := exec.Command(r.compose[0], full...)
	cmd.Env = append(os.Environ(), "DETOUR_IMAGE="+image)
	return cmd
}

// down takes the project down, volumes included, once; a failed test first prints the end of
// every service's log.
func (r *composeRun) down() {
	if r.began.IsZero() {
		return
	}
	if r.t.Failed() {
		out, _ := r.composeCmd("logs", "--no-color", "--tail=30").CombinedOutput()
		r.t.Logf("the cluster's logs, the last 30 lines of each service:\n%s", out)
	}
	if out, err := r.composeCmd("down", "-v", "--remove-orphans").CombinedOutput(); err != nil {
		r.t.Logf("take the cluster down: %v\n%s", err, out)
	}
	r.began = time.Time{}
}

// dig asks the name of a dig line (`dig @HOST -p PORT +short NAME`) until its answer is what the
// comment says.
func (r *composeRun) dig(args []string, comment string) {
	t := r.t
	t.Helper()
	var server, port, name string
	for i := 1; i < len(args); i++ {
		switch {
		case strings.HasPrefix(args[i], "@"):
			server = args[i][1:]
		case args[i] == "-p" && i+1 < len(args):
			i++
			port = args[i]
		case !strings.HasPrefix(args[i], "+"):
			name = args[i]
		}
	}
	addr := net.JoinHostPort(server, port)
	wantA, wantCNAME := ipv4.FindString(comment), demoName.FindString(comment)
	var got string
	took := eventually(t, r.within(), func() bool {
		switch {
		case wantCNAME != "":
			got = cname(addr, name)
			return got == dns.Fqdn(wantCNAME)
		case wantA != "":
			got = strings.Join(answer(addr, name), " ")
			return got == wantA
		default:
			got = strings.Join(answer(addr, name), " ")
			return got != "" && !strings.HasPrefix(got, "error")
		}
	}, "%s answered %q for %s; the README says %q", addr, lazyString{&got}, name, comment)
	t.Logf("%s → %s after %s", name, got, took.Round(10*time.Millisecond))
}

// curl gets the URL of a curl line until it answers 200 with the comment's quoted text in its
// body; a Bearer header takes the write token the controller's log shows.
func (r *composeRun) curl(cmd, comment string) {
	t := r.t
	t.Helper()
	url := cmd[strings.LastIndex(cmd, " ")+1:]
	token := ""
	if strings.Contains(cmd, "Bearer $DETOUR_TOKEN") {
		m := regexp.MustCompile(`export DETOUR_TOKEN=(\S+)`).FindStringSubmatch(r.dockerCompose("logs", "--no-color", "controller"))
		if m == nil {
			fatalf(t, "the controller's log shows no write token, which the README says it prints once")
		}
		token = m[1]
	}
	want := "edge-west" // /v1/edges lists both edges
	if q := quoted.FindStringSubmatch(comment); q != nil {
		want = q[1]
	}
	var got string
	eventually(t, r.within(), func() bool {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			got = err.Error()
			return false
		}
		defer resp.Body.Close()
		b := make([]byte, 64<<10)
		n, _ := io.ReadFull(resp.Body, b)
		got = resp.Status + " " + string(b[:n])
		return resp.StatusCode == http.StatusOK && strings.Contains(got, want)
	}, "%s answered %q; the README says %q", url, lazyString{&got}, comment)
}

// state reads STATE as the README's `go tool nats` line does, with its server URL and
// credentials: it must hold shop's us-west endpoint going down (the README stopped its
// backend) and edge-west's heartbeats lost (killed).
func (r *composeRun) state(cmd string) {
	t := r.t
	t.Helper()
	m := natsServer.FindStringSubmatch(cmd)
	if m == nil {
		fatalf(t, "%q names no --server", cmd)
	}
	for _, filter := range []string{"detour.state.endpoint.shop.us-west.>", "detour.state.edge.edge-west"} {
		var got []string
		eventually(t, r.within(), func() bool {
			got = nil
			events, err := readState(m[1], filter)
			for _, e := range events {
				got = append(got, e.To)
			}
			return err == nil && len(got) > 0 && got[len(got)-1] == "down"
		}, "STATE's %s holds %v, want it to end down", filter, lazyStrings{&got})
	}
}

// healthy waits until every service the project still runs but apply reports healthy.
func (r *composeRun) healthy(comment string) {
	t := r.t
	t.Helper()
	if !strings.Contains(comment, "healthy") {
		errorf(t, "the README's ps line says %q, which names no health", comment)
	}
	var unhealthy []string
	eventually(t, r.within()+time.Minute, func() bool {
		unhealthy = nil
		out, err := r.composeCmd("ps").Output()
		if err != nil {
			unhealthy = []string{err.Error()}
			return false
		}
		running := 0
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.Contains(line, " Up") || applyService.MatchString(line) {
				continue
			}
			running++
			if !strings.Contains(line, "(healthy)") {
				unhealthy = append(unhealthy, strings.Fields(line)[0])
			}
		}
		return running > 10 && len(unhealthy) == 0
	}, "services not healthy: %v", lazyStrings{&unhealthy})
}

// lazyString and lazyStrings print what a poll last saw when it gives up.
type lazyString struct{ s *string }

func (l lazyString) String() string { return *l.s }

type lazyStrings struct{ s *[]string }

func (l lazyStrings) String() string { return strings.Join(*l.s, ", ") }
