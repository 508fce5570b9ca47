package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/prober/benchenv"
	"github.com/detourdev/detour/services/natsd"
	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// proc is one child process: a role of Detour, a listeners' holder or the load generator.
type proc struct {
	role, name string
	cmd        *exec.Cmd
	// logFile receives the child's stderr (and stdout, past its first line).
	logFile string
	cpu0    time.Duration
	wait0   time.Duration
	// cpu and rss are what the child used in the phase measured last; wait is how long its
	// threads waited for a CPU meanwhile.
	cpu, wait time.Duration
	rss       int64
}

// stack is every process of one region's run and the benchmark's connection to NATS.
type stack struct {
	s       settings
	n       int
	dir     string
	detour  string
	cfgPath string
	natsURL string
	creds   string
	js      jetstream.JetStream
	procs   []*proc
	doomed  *proc
	// fw refuses the doomed region's connections while its rule is in.
	fw       *firewall
	notifies *atomic.Int64
	notify   *dns.Server
	// checks are the configuration's checks by key, to reckon each check's instants.
	checks map[string]config.Check
}

const dnsAddr = "127.0.0.1:5353"

// start runs a child in the stack's directory with its output in a log file; with firstLine,
// it returns the first line the child prints on stdout, within 60 s.
func (st *stack) start(role, name string, firstLine bool, bin string, args ...string) (*proc, string, error) {
	p := &proc{role: role, name: name, logFile: filepath.Join(st.dir, name+".log")}
	logf, err := os.Create(p.logFile)
	if err != nil {
		return nil, "", err
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = st.dir
	p.cmd.Env = append(os.Environ(), "DETOUR_NATS="+st.natsURL, "DETOUR_NATS_NKEY="+st.creds)
	p.cmd.Stderr = logf
	benchenv.DiesWithThis(p.cmd)
	var out io.ReadCloser
	if firstLine {
		if out, err = p.cmd.StdoutPipe(); err != nil {
			return nil, "", err
		}
	} else {
		p.cmd.Stdout = logf
	}
	if err := p.cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	st.procs = append(st.procs, p)
	if !firstLine {
		return p, "", nil
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			return p, "", fmt.Errorf("%s exited before it was ready; see %s", name, p.logFile)
		}
		return p, l, nil
	case <-time.After(60 * time.Second):
		return p, "", fmt.Errorf("%s not ready within 60s; see %s", name, p.logFile)
	}
}

// startListeners starts a process holding n listeners on port 80 of 127.<net>.0.0/16, and
// returns once all of them listen.
func (st *stack) startListeners(net int, name string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, l, err := st.start("listeners", name, true, self, "-role", "listeners", "-net", fmt.Sprint(net), "-listeners", fmt.Sprint(st.n))
	if err == nil && l != "listening" {
		err = fmt.Errorf("%s printed %q, want \"listening\"; see %s", name, l, p.logFile)
	}
	return p, err
}

// kill kills the region at once, time zero being the rule's command: the firewall refuses every
// connection to it, then the listeners' process is killed with SIGKILL, reaped (which takes the
// kernel 0.2–0.5 s with 10,000 sockets, the region refused all along) and forgotten.
func (st *stack) kill(ph *phase) error {
	var err error
	if ph.at, ph.committed, err = st.fw.refuse(); err != nil {
		return err
	}
	p := st.doomed
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill the listeners: %w", err)
	}
	_ = p.cmd.Wait()
	ph.reaped = time.Since(ph.at)
	for i, q := range st.procs {
		if q == p {
			st.procs = append(st.procs[:i], st.procs[i+1:]...)
			break
		}
	}
	st.doomed = nil
	return nil
}

// restore brings the region back at once, its new listeners already listening: the firewall
// stops refusing them, time zero being the command.
func (st *stack) restore(ph *phase) error {
	var err error
	ph.at, ph.committed, err = st.fw.admit()
	return err
}

// up starts NATS, the firewall, the listeners and every role of Detour.
func (st *stack) up() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	jsDir := filepath.Join(st.dir, "nats")
	if err := os.MkdirAll(jsDir, 0o700); err != nil {
		return err
	}
	_, line, err := st.start("nats", "nats", true, self, "-role", "nats", "-dir", jsDir)
	if err != nil {
		return err
	}
	url, creds, ok := strings.Cut(line, " ")
	if !ok {
		return fmt.Errorf("nats printed %q, want its URL and credentials file", line)
	}
	st.natsURL, st.creds = url, creds
	if st.fw, err = startFirewall(filepath.Join(st.dir, "nft.log")); err != nil {
		return err
	}
	opt, err := natsd.SeedOption(creds)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, opt, nats.Name("regionbench"))
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	if st.js, err = jetstream.New(nc); err != nil {
		return err
	}
	// The streams a deployment would size for a day of results at this rate (ProbeRate ×
	// 24 h × 512 B: 177 GB for 1,000 endpoints of 2 pools) do not fit this disk: the benchmark
	// keeps two minutes of results.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := events.EnsureStreams(ctx, st.js, events.StreamOptions{ProbeRetention: 2 * time.Minute}); err != nil {
		return err
	}
	if st.doomed, err = st.startListeners(1, "listeners-doomed"); err != nil {
		return err
	}
	if _, err := st.startListeners(2, "listeners-backup"); err != nil {
		return err
	}
	common := []string{"--config", st.cfgPath, "--log-format", "json", "--log-level", "warn"}
	roles := [][]string{
		{"decider", "decider", "--name", "decider-1"},
		{"dns", "dns", "--name", "dns-1", "--addr", dnsAddr, "--data-dir", filepath.Join(st.dir, "dns-1"), "--log-level", "debug"},
		{"controller", "controller", "--name", "controller-1", "--api-addr", ""},
	}
	for k := range st.s.probers {
		roles = append(roles, []string{"prober", fmt.Sprintf("prober-%d", k), "--region", "safe", "--name", fmt.Sprintf("p%d", k)})
	}
	for e := range st.edges() {
		name := fmt.Sprintf("edge-%d", e)
		// Debug logs: the benchmark reads when each route table was applied.
		roles = append(roles, []string{"edge", name, "--name", name, "--resolver", dnsAddr,
			"--data-dir", filepath.Join(st.dir, name), "--log-level", "debug"})
	}
	for _, r := range roles {
		args := append([]string{r[0]}, common...)
		args = append(args, r[2:]...)
		if _, _, err := st.start(r[0], r[1], false, st.detour, args...); err != nil {
			return err
		}
	}
	return nil
}

func (st *stack) edges() int { return (st.n + st.s.appsPerEdge - 1) / st.s.appsPerEdge }

// down stops every child: SIGTERM, then SIGKILL after 10 s.
func (st *stack) down() {
	for i := len(st.procs) - 1; i >= 0; i-- {
		p := st.procs[i]
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	}
	st.procs = nil
	if st.fw != nil {
		st.fw.stop()
	}
	if st.js != nil {
		st.js.Conn().Close()
	}
	if st.notify != nil {
		_ = st.notify.Shutdown()
	}
}

// startSecondary acknowledges and counts the NOTIFYs sent to the address it returns.
func (st *stack) startSecondary() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	st.notifies = &atomic.Int64{}
	st.notify = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if m.Opcode == dns.OpcodeNotify {
			st.notifies.Add(1)
		}
		r := new(dns.Msg)
		r.SetReply(m)
		_ = w.WriteMsg(r)
	})}
	go func() { _ = st.notify.ActivateAndServe() }()
	return pc.LocalAddr().String(), nil
}

// measureFrom starts a phase's accounting of every child: CPU and run-queue wait from now, peak
// RSS reset.
func (st *stack) measureFrom() {
	for _, p := range st.procs {
		p.cpu0, _ = benchenv.CPUTime(p.cmd.Process.Pid)
		p.wait0, _ = benchenv.RunQueueWait(p.cmd.Process.Pid)
		// Writing 5 resets the peak resident set (VmHWM) to the current one.
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0)
	}
}

// measured ends the phase's accounting of every running child.
func (st *stack) measured() {
	for _, p := range st.procs {
		c, _ := benchenv.CPUTime(p.cmd.Process.Pid)
		p.cpu = c - p.cpu0
		w, _ := benchenv.RunQueueWait(p.cmd.Process.Pid)
		p.wait = w - p.wait0
		p.rss, _ = benchenv.PeakRSS(p.cmd.Process.Pid)
	}
}

// lastSeq is a stream's last sequence.
func (st *stack) lastSeq(ctx context.Context, stream string) uint64 {
	s, err := st.js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// read calls f with every message of stream on subjects matching filter after sequence from,
// up to the stream's last sequence now.
func (st *stack) read(ctx context.Context, stream, filter string, from uint64, f func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	last := st.lastSeq(ctx, stream)
	if last <= from {
		return nil
	}
	cons, err := st.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		var seq uint64
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read %s: %w", stream, err)
			}
			f(m, md)
			seq = md.Sequence.Stream
			got++
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 || seq >= last {
			return nil
		}
	}
}
