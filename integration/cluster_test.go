//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockernetwork "github.com/docker/docker/api/types/network"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// image is the tag TestMain builds from deployments/Dockerfile, this run's own: two runs from
// two work trees must not start each other's binaries.
var image = imageRepo + ":" + imageTagPrefix + strconv.Itoa(os.Getpid())

const imageRepo, imageTagPrefix = "detour", "integration-"

func TestMain(m *testing.M) {
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true") // Ryuk needs an image pull
	if os.Getenv("DETOUR_IT_LOGS") == "" {
		// A line per container started or stopped drowns the suites' measurements.
		tclog.SetDefault(log.New(io.Discard, "", 0))
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		fmt.Println("integration: no Docker engine answers (`docker info` failed); skipping the suites")
		os.Exit(0)
	}
	removeLeftovers()
	if err := buildImage(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build image:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = exec.Command("docker", "image", "rm", image).Run()
	_ = os.Remove(detourBin)
	os.Exit(code)
}

// runLabel marks every container and network a run creates with the id of the process that ran
// it, so the next run can tell a dead run's leftovers (a test that timed out runs no cleanup) from
// those of a run still going on this Docker engine.
const runLabel = "dev.detour.integration.pid"

// removeLeftovers removes the containers and networks of earlier runs whose process is gone.
func removeLeftovers() {
	for _, kind := range []struct{ list, rm []string }{
		{[]string{"container", "ls", "-a"}, []string{"container", "rm", "-f", "-v"}},
		{[]string{"network", "ls"}, []string{"network", "rm"}},
	} {
		out, err := exec.Command("docker", append(kind.list, "--filter", "label="+runLabel,
			"--format", `{{.ID}} {{.Label "`+runLabel+`"}}`)...).Output()
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration: list leftovers (docker %s): %v\n", strings.Join(kind.list, " "), err)
			continue
		}
		var dead []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			id, pid, ok := strings.Cut(line, " ")
			if ok && deadRun(pid) {
				dead = append(dead, id)
			}
		}
		if len(dead) == 0 {
			continue
		}
		if out, err := exec.Command("docker", append(kind.rm, dead...)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: remove %d leftovers (docker %s): %v\n%s", len(dead), strings.Join(kind.rm, " "), err, out)
		} else {
			fmt.Printf("integration: removed %d %ss left by runs that ended without cleaning up\n", len(dead), kind.list[0])
		}
	}
	// The README's compose cluster, as TestTheREADMEsComposeClusterDoesWhatItSays started it,
	// carries the run's process id in its project's name.
	out, err := exec.Command("docker", "container", "ls", "-a", "--filter", "label=com.docker.compose.project",
		"--format", `{{.Label "com.docker.compose.project"}}`).Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: list compose projects: %v\n", err)
	}
	projects := strings.Fields(string(out))
	slices.Sort(projects)
	for _, p := range slices.Compact(projects) {
		if pid, ok := strings.CutPrefix(p, composeProjectPrefix); ok && deadRun(pid) {
			removeComposeProject(p)
		}
	}
	// Images carry the run's process id in their tag, the operator's binaries in their name.
	out, _ = exec.Command("docker", "image", "ls", imageRepo, "--format", "{{.Tag}}").Output()
	for _, tag := range strings.Fields(string(out)) {
		if deadRun(strings.TrimPrefix(tag, imageTagPrefix)) && strings.HasPrefix(tag, imageTagPrefix) {
			_ = exec.Command("docker", "image", "rm", imageRepo+":"+tag).Run()
		}
	}
	bins, _ := filepath.Glob(filepath.Join(os.TempDir(), binPrefix+"*"))
	for _, b := range bins {
		if deadRun(strings.TrimPrefix(filepath.Base(b), binPrefix)) {
			_ = os.Remove(b)
		}
	}
}

// deadRun reports whether pid names a process that no longer runs.
func deadRun(pid string) bool {
	n, err := strconv.Atoi(pid)
	return err == nil && n != os.Getpid() && syscall.Kill(n, 0) == syscall.ESRCH
}

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildImage builds the static binaries and the FROM-scratch image, as `task image` does.
func buildImage() error {
	root := repoRoot()
	ctxDir, err := os.MkdirTemp("", "detour-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(ctxDir)
	steps := [][]string{
		{"go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "detour"), "./services/cmd/detour"},
		{"cp", filepath.Join(ctxDir, "detour"), detourBin},
		{"go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "nats-server"), "github.com/nats-io/nats-server/v2"},
		{"cp", "/etc/ssl/certs/ca-certificates.crt", ctxDir},
		{"mkdir", "-p", filepath.Join(ctxDir, "data")},
		{"docker", "build", "-q", "-t", image, "--label", runLabel + "=" + strconv.Itoa(os.Getpid()), "-f", filepath.Join(root, "deployments", "Dockerfile"), ctxDir},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK="+filepath.Join(root, "go.work"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// cluster is a Docker network with Detour's containers on it, reached from the test by their IPs.
type cluster struct {
	t   *testing.T
	ctx context.Context
	net *testcontainers.DockerNetwork
	// prefix is the network's first three octets: fixed addresses are prefix.2 to prefix.127,
	// Docker hands out the upper half.
	prefix string
	all    map[string]testcontainers.Container
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := context.Background()
	// A subnet of our own for this run, so fixed addresses survive container restarts. Another
	// run on this engine may hold the first one tried: the next free one is taken. The network
	// is internal: nothing a container sends leaves it (the test reaches the containers from the
	// host through the bridge).
	var n *testcontainers.DockerNetwork
	var prefix string
	var err error
	for i := range 250 {
		prefix = fmt.Sprintf("172.29.%d", 1+(os.Getpid()+i)%250)
		n, err = network.New(ctx, network.WithLabels(map[string]string{runLabel: strconv.Itoa(os.Getpid())}),
			network.WithInternal(),
			network.WithIPAM(&dockernetwork.IPAM{Config: []dockernetwork.IPAMConfig{{
				Subnet: prefix + ".0/24", IPRange: prefix + ".128/25", Gateway: prefix + ".1",
			}}}))
		if err == nil || !strings.Contains(err.Error(), "overlap") {
			break
		}
	}
	if err != nil {
		fatalf(t, "create network: %v", err)
	}
	c := &cluster{t: t, ctx: ctx, net: n, prefix: prefix, all: map[string]testcontainers.Container{}}
	// Registered before the logs' dump, so said after it: the last lines of a failing suite's
	// output (all a CI summary may keep) say why it failed.
	t.Cleanup(func() {
		if why := failures(t); t.Failed() && len(why) > 0 {
			t.Logf("=== %s failed:\n%s", t.Name(), strings.Join(why, "\n"))
		}
	})
	t.Cleanup(func() {
		for name, ctr := range c.all {
			if t.Failed() || os.Getenv("DETOUR_IT_LOGS") != "" {
				c.dumpLogs(name, ctr)
			}
			_ = ctr.Terminate(ctx)
		}
		_ = n.Remove(ctx)
	})
	return c
}

// dumpLogs prints the last 8 KiB of a container's logs and, when DETOUR_IT_LOG_DIR is set,
// keeps all of them there as <test>/<container>.log.
func (c *cluster) dumpLogs(name string, ctr testcontainers.Container) {
	r, err := ctr.Logs(c.ctx)
	if err != nil {
		return
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	if dir := os.Getenv("DETOUR_IT_LOG_DIR"); dir != "" {
		dir = filepath.Join(dir, strings.ReplaceAll(c.t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(dir, name+".log"), b, 0o644)
		}
		if err != nil {
			c.t.Logf("keep the logs of %s: %v", name, err)
		}
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	c.t.Logf("--- logs of %s (last 8 KiB) ---\n%s", name, b)
}

// run starts a container named name from the Detour image with the given entrypoint,
// arguments and environment, files copied in (host path → container path), and waits for it by the given strategy (nil: started).
func (c *cluster) run(name string, entrypoint, args []string, env, files map[string]string, w wait.Strategy) testcontainers.Container {
	c.t.Helper()
	return c.runAt("", name, entrypoint, args, env, files, w)
}

// runAt is run with the fixed address ip ("" for one Docker picks).
func (c *cluster) runAt(ip, name string, entrypoint, args []string, env, files map[string]string, w wait.Strategy) testcontainers.Container {
	c.t.Helper()
	req := testcontainers.ContainerRequest{
		Name: fmt.Sprintf("detour-it-%d-%s-%d", os.Getpid(), name, time.Now().UnixNano()), Image: image,
		Labels:     map[string]string{runLabel: strconv.Itoa(os.Getpid())},
		Entrypoint: entrypoint, Cmd: args,
		Networks: []string{c.net.Name}, NetworkAliases: map[string][]string{c.net.Name: {name}},
		Env: env, WaitingFor: w, User: "0:0",
		// Docker's resolver in each container answers the containers' names and sends any other
		// name (a stopped container's among them) to the servers given here, from the
		// container's namespace: its own loopback, where nothing (or dns-1, which refuses) answers,
		// rather than the host's resolvers. The roles reach each other by address anyway.
		HostConfigModifier: func(hc *container.HostConfig) { hc.DNS = []string{"127.0.0.1"} },
	}
	if ip != "" {
		req.EndpointSettingsModifier = func(m map[string]*dockernetwork.EndpointSettings) {
			m[c.net.Name].IPAMConfig = &dockernetwork.EndpointIPAMConfig{IPv4Address: ip}
		}
	}
	for host, ctr := range files {
		req.Files = append(req.Files, testcontainers.ContainerFile{HostFilePath: host, ContainerFilePath: ctr, FileMode: 0o644})
	}
	ctr, err := testcontainers.GenericContainer(c.ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		fatalf(c.t, "start %s: %v", name, err)
	}
	c.all[name] = ctr
	return ctr
}

func (c *cluster) ip(name string) string {
	c.t.Helper()
	ip, err := c.all[name].ContainerIP(c.ctx)
	if err != nil || ip == "" {
		fatalf(c.t, "ip of %s: %q, %v", name, ip, err)
	}
	return ip
}

// stop stops a container as a crash or a power cut would look to the others.
func (c *cluster) kill(name string) {
	c.t.Helper()
	timeout := time.Duration(0)
	if err := c.all[name].Stop(c.ctx, &timeout); err != nil {
		fatalf(c.t, "kill %s: %v", name, err)
	}
}

// disconnect takes name off the cluster's network, as a cut link looks to both sides: its
// connections stall and nothing reaches it; connect puts it back under its name.
func (c *cluster) disconnect(name string) {
	c.t.Helper()
	if out, err := exec.Command("docker", "network", "disconnect", "-f", c.net.ID, c.all[name].GetContainerID()).CombinedOutput(); err != nil {
		fatalf(c.t, "cut %s off the network: %v\n%s", name, err, out)
	}
}

func (c *cluster) connect(name string) {
	c.t.Helper()
	if out, err := exec.Command("docker", "network", "connect", "--alias", name, c.net.ID, c.all[name].GetContainerID()).CombinedOutput(); err != nil {
		fatalf(c.t, "reconnect %s: %v\n%s", name, err, out)
	}
}

func (c *cluster) start(name string) {
	c.t.Helper()
	if err := c.all[name].Start(c.ctx); err != nil {
		fatalf(c.t, "restart %s: %v", name, err)
	}
}

// natsCluster starts three JetStream nodes with the deployment's per-process users, at fixed
// addresses (prefix.31–33) that the roles and the nodes' routes use: a restarted node keeps its
// address, and no one looks a node's name up (a stopped node's name is unknown to Docker).
func (c *cluster) natsCluster() {
	dir := filepath.Join(repoRoot(), "deployments", "nats")
	files := map[string]string{filepath.Join(dir, "nats.conf"): "/etc/nats/nats.conf", filepath.Join(dir, "accounts.conf"): "/etc/nats/accounts.conf"}
	var routes []string
	for i := 1; i <= 3; i++ {
		routes = append(routes, fmt.Sprintf("nats://route:route-demo@%s:6222", c.natsIP(i)))
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("nats-%d", i)
		c.runAt(c.natsIP(i), name, []string{"/usr/local/bin/nats-server"}, []string{"-c", "/etc/nats/nats.conf", "--routes", strings.Join(routes, ",")},
			map[string]string{"NATS_NAME": name}, files, wait.ForLog("Server is ready"))
	}
}

// natsIP is the address of JetStream node i (1–3).
func (c *cluster) natsIP(i int) string { return fmt.Sprintf("%s.%d", c.prefix, 30+i) }

// natsURL is the URL a role uses to reach the cluster as user.
func (c *cluster) natsURL(user string) string {
	var urls []string
	for i := 1; i <= 3; i++ {
		urls = append(urls, fmt.Sprintf("nats://%s:%s-demo@%s:4222", user, user, c.natsIP(i)))
	}
	return strings.Join(urls, ",")
}

// answer asks server for name A over UDP and returns the sorted addresses, or an error text.
func answer(server, name string) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(m, server)
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// eventually polls cond every 50ms until it holds or within passes.
// failed holds why each test failed so far, by test name.
var failed = struct {
	sync.Mutex
	why map[string][]string
}{why: map[string][]string{}}

func noteFailure(t testing.TB, format string, args ...any) {
	failed.Lock()
	defer failed.Unlock()
	failed.why[t.Name()] = append(failed.why[t.Name()], fmt.Sprintf(format, args...))
}

// failures is why t failed so far.
func failures(t testing.TB) []string {
	failed.Lock()
	defer failed.Unlock()
	return failed.why[t.Name()]
}

// errorf is t.Errorf, noted for the summary a failing suite ends with.
func errorf(t testing.TB, format string, args ...any) {
	t.Helper()
	noteFailure(t, format, args...)
	t.Errorf(format, args...)
}

// fatalf is t.Fatalf, noted for the summary a failing suite ends with.
func fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	noteFailure(t, format, args...)
	t.Fatalf(format, args...)
}

func eventually(t *testing.T, within time.Duration, cond func() bool, msg string, args ...any) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			fatalf(t, "not within %s: "+msg, append([]any{within}, args...)...)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// transitions reads the statuses recorded on STATE subjects matching filter, in order.
func transitions(t *testing.T, url, filter string) []string {
	t.Helper()
	var out []string
	for _, e := range stateLog(t, url, filter) {
		out = append(out, e.To)
	}
	return out
}

// stateEvent is one transition as STATE holds it.
type stateEvent struct {
	// Source is the worker that appended it.
	Subject, To, Source string
	// Stored is when JetStream stored it, at stream sequence Seq.
	Stored time.Time
	Seq    uint64
}

// stateLog reads the transitions recorded on STATE subjects matching filter, in order. A node
// just killed may have led the JetStream cluster: the read is tried again for up to 30 s while
// a new leader is elected.
func stateLog(t *testing.T, url, filter string) []stateEvent {
	t.Helper()
	var out []stateEvent
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, err = readState(url, filter); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		fatalf(t, "read STATE: %v", err)
	}
	return out
}

func readState(url, filter string) ([]stateEvent, error) {
	js, done, err := jetStreamAt(url)
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateConsumer(ctx, "STATE", jetstream.ConsumerConfig{
		FilterSubject: filter, AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute})
	if err != nil {
		return nil, err
	}
	var out []stateEvent
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e struct {
				Source string `json:"source"`
				Data   struct {
					To string `json:"to"`
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				return nil, fmt.Errorf("STATE holds an undecodable event on %s: %w", m.Subject(), err)
			}
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, stateEvent{Subject: m.Subject(), To: e.Data.To, Source: e.Source, Stored: md.Timestamp, Seq: md.Sequence.Stream})
			if md.NumPending == 0 {
				return out, batch.Error()
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
	}
}

// jetStreamCurrent reports whether the JetStream node name answers its monitor's /healthz with
// 200: its streams and consumers are current with their groups.
func (c *cluster) jetStreamCurrent(name string) bool {
	ip, err := c.all[name].ContainerIP(c.ctx)
	if err != nil || ip == "" {
		return false
	}
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + ip + ":8222/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// jetStreamAt connects to the JetStream node at url; done closes the connection.
func jetStreamAt(url string) (js jetstream.JetStream, done func(), err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", url, err)
	}
	if js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}
