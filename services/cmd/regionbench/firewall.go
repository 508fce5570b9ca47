package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

// refuseRule refuses every TCP connection to the doomed region's endpoints (addr(1, i):80) with
// a reset, as a host answers where nothing listens: a check sees "connection refused", as from
// a dead listener. One nftables transaction adds it (or flushes it) for every endpoint at once.
const refuseRule = "ip daddr 127.1.0.0/16 tcp dport 80 reject with tcp reset"

// firewall is an interactive nft in the benchmark's network namespace, holding the table
// "regionbench" whose input chain refuses the doomed region while the rule is in. Started
// beforehand, it commits a change within a millisecond or so of the command (no process to
// start, no ruleset to read); each change is acknowledged by nft's echo of the transaction,
// which the kernel sends once the transaction is committed.
type firewall struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	lines   chan string
	logFile string
}

// startFirewall starts nft -i with its errors in logFile and creates the table and its chain,
// empty (a rule left by an earlier region of the same run flushed): every endpoint answers.
func startFirewall(logFile string) (*firewall, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("nft (Debian package nftables) is not installed: run deployments/install-packages.sh deployments/packages/bench.txt")
	}
	logf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	f := &firewall{cmd: exec.Command("nft", "-i", "-e"), lines: make(chan string, 64), logFile: logFile}
	f.cmd.Stderr = logf
	benchenv.DiesWithThis(f.cmd)
	if f.in, err = f.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := f.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nft: %w", err)
	}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
	}()
	if _, _, err := f.do("add table ip regionbench; add chain ip regionbench input { type filter hook input priority 0; }; flush chain ip regionbench input",
		"add chain ip regionbench input"); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// refuse puts the rule in: from the instant of its commit every endpoint of the region refuses
// connections. sent is when the command was written (time zero: the commit cannot precede it),
// took how long after it nft acknowledged the commit.
func (f *firewall) refuse() (sent time.Time, took time.Duration, err error) {
	return f.do("add rule ip regionbench input "+refuseRule, "add rule ip regionbench input")
}

// admit takes the rule out, every endpoint answering again at once; re-adding the chain, which
// exists, changes nothing but has the transaction echoed.
func (f *firewall) admit() (sent time.Time, took time.Duration, err error) {
	return f.do("flush chain ip regionbench input; add chain ip regionbench input", "add chain ip regionbench input")
}

// do sends one transaction and waits up to 10 s for the echoed line starting with ack.
func (f *firewall) do(cmd, ack string) (sent time.Time, took time.Duration, err error) {
	sent = time.Now()
	if _, err := io.WriteString(f.in, cmd+"\n"); err != nil {
		return sent, 0, fmt.Errorf("nft: %w", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				return sent, 0, fmt.Errorf("nft exited on %q; see its errors in %s", cmd, f.logFile)
			}
			if strings.HasPrefix(l, ack) {
				return sent, time.Since(sent), nil
			}
		case <-timeout:
			return sent, 0, fmt.Errorf("nft did not acknowledge %q within 10s", cmd)
		}
	}
}

// stop ends nft; the table stays in the namespace, which ends with the benchmark.
func (f *firewall) stop() {
	_ = f.in.Close()
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}
