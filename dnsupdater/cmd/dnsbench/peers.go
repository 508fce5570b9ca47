package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/detourdev/detour/prober/benchenv"
)

// pinned (-pin) runs every server on serverCPU and dnsperf on clientCPU.
var pinned bool

const serverCPU, clientCPU = 0, 1

// pin returns the command line that runs program with args on cpu when -pin is set.
func pin(cpu int, program string, args []string) (string, []string) {
	if !pinned {
		return program, args
	}
	return "taskset", append([]string{"-c", strconv.Itoa(cpu), program}, args...)
}

// startProcess runs a server in the foreground (on serverCPU with -pin).
func startProcess(ctx context.Context, dir, program string, args ...string) (running, error) {
	return startProcessEnv(ctx, dir, nil, program, args...)
}

// startProcessEnv is startProcess with env (K=V) added to this program's environment.
func startProcessEnv(ctx context.Context, dir string, env []string, program string, args ...string) (running, error) {
	path, err := exec.LookPath(program)
	if err != nil {
		return running{}, fmt.Errorf("%s is not installed (deployments/packages/bench.txt)", filepath.Base(program))
	}
	ctx, cancel := context.WithCancel(ctx)
	name, argv := pin(serverCPU, path, args)
	cmd := exec.CommandContext(ctx, name, argv...)
	benchenv.DiesWithThis(cmd)
	// Stop servers as an operator would, so they can finish and report.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log, err := os.Create(filepath.Join(dir, filepath.Base(program)+".log"))
	if err != nil {
		cancel()
		return running{}, fmt.Errorf("create log: %w", err)
	}
	cmd.Stdout, cmd.Stderr, cmd.Dir = log, log, dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		log.Close()
		return running{}, fmt.Errorf("start %s: %w", filepath.Base(program), err)
	}
	return running{
		cpu: func() time.Duration { return treeCPU(cmd.Process.Pid) },
		pid: cmd.Process.Pid,
		stop: func() {
			cancel()
			_ = cmd.Wait()
			log.Close()
		},
	}, nil
}

func writeFiles(dir string, files map[string]string) error {
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// nsdTarget runs NSD with two server processes and response rate limiting off.
func nsdTarget(ctx context.Context, dir, addr string) (running, error) {
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`server:
  ip-address: %[2]s@%[3]s
  port: %[3]s
  server-count: 2
  username: ""
  chroot: ""
  zonesdir: "%[1]s"
  pidfile: "%[1]s/nsd.pid"
  database: ""
  zonelistfile: "%[1]s/zone.list"
  xfrdfile: "%[1]s/xfrd.state"
  xfrdir: "%[1]s"
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: demo.test
  zonefile: "%[1]s/demo.test.zone"
`, dir, host, port)
	if err := writeFiles(dir, map[string]string{"nsd.conf": conf, "demo.test.zone": zoneFile}); err != nil {
		return running{}, err
	}
	return startProcess(ctx, dir, "nsd", "-d", "-c", filepath.Join(dir, "nsd.conf"))
}

// knotTarget runs Knot DNS with two UDP workers.
func knotTarget(ctx context.Context, dir, addr string) (running, error) {
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: %[2]s@%[3]s
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
database:
    storage: "%[1]s"
log:
  - target: stderr
    any: warning
zone:
  - domain: demo.test
    storage: "%[1]s"
    file: demo.test.zone
    journal-content: none
    zonefile-sync: -1
`, dir, host, port)
	if err := writeFiles(dir, map[string]string{"knot.conf": conf, "demo.test.zone": zoneFile}); err != nil {
		return running{}, err
	}
	return startProcess(ctx, dir, "knotd", "-c", filepath.Join(dir, "knot.conf"))
}

// pdnsTarget runs the PowerDNS authoritative server with its bind backend; lua serves the
// app name from a Lua record health-checked with ifportup (one shared Lua state). cacheTTL is
// the packet cache's TTL in seconds (0 turns the cache off).
func pdnsTarget(lua bool, checkPort, cacheTTL int) startFunc {
	return func(ctx context.Context, dir, addr string) (running, error) {
		host, port, _ := net.SplitHostPort(addr)
		zone := zoneFile
		if lua {
			zone = luaZone(checkPort)
		}
		named := fmt.Sprintf("zone \"demo.test\" { type master; file \"%s/demo.test.zone\"; };\n", dir)
		if err := writeFiles(dir, map[string]string{"named.conf": named, "demo.test.zone": zone}); err != nil {
			return running{}, err
		}
		args := []string{
			"--no-config", "--daemon=no", "--guardian=no", "--disable-syslog", "--loglevel=3",
			"--local-address=" + host, "--local-port=" + port, "--socket-dir=" + dir,
			"--launch=bind", "--bind-config=" + filepath.Join(dir, "named.conf"),
			"--receiver-threads=2", "--webserver=no", "--api=no", fmt.Sprintf("--cache-ttl=%d", cacheTTL),
		}
		if lua {
			args = append(args, "--enable-lua-records=shared")
		}
		return startProcess(ctx, dir, "pdns_server", strings.Fields(strings.Join(args, " "))...)
	}
}
