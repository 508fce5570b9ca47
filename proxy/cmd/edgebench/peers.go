package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// nginxConfig is nginx as a reverse proxy to backend on listen, with the same work per request
// as the edge (upstream keep-alive, the Host header kept, X-Forwarded-For appended) and the
// edge's default timeouts and retries: connect 2s, response header 15s, client header 10s,
// idle 90s, client write 60s, the next upstream after a connection failure or a timeout.
func nginxConfig(dir, listen, backend string) string {
	return fmt.Sprintf(`worker_processes 2;
error_log %[1]s/nginx-error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 90s;
  client_header_timeout 10s;
  send_timeout 60s;
  large_client_header_buffers 4 64k;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  fastcgi_temp_path %[1]s/nginx-fastcgi;
  uwsgi_temp_path %[1]s/nginx-uwsgi;
  scgi_temp_path %[1]s/nginx-scgi;
  upstream backend { server %[3]s; keepalive 64; keepalive_requests 1000000; }
  server {
    listen %[2]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_connect_timeout 2s;
      proxy_read_timeout 15s;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
    }
  }
}
`, dir, listen, backend)
}

// haproxyConfig is HAProxy as a reverse proxy to backend on listen, with connection reuse and
// X-Forwarded-For, two threads like the other proxies' two workers, and the edge's default
// timeouts and retries (see nginxConfig).
func haproxyConfig(listen, backend string) string {
	return fmt.Sprintf(`global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 2s
  timeout server 15s
  timeout http-request 10s
  timeout http-keep-alive 90s
  timeout client 60s
  timeout tunnel 1h
  retries 2
  retry-on conn-failure response-timeout
  option redispatch
  option forwardfor
  http-reuse always
frontend fe
  bind %s
  default_backend be
backend be
  server s1 %s
`, listen, backend)
}

// process is a child server process.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// start runs a child and waits until addr accepts connections.
func start(ctx context.Context, name, addr, logPath string, argv ...string) (*process, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("start %s: exited before listening on %s: %v (log: %s)", name, addr, err, logPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("start %s: not listening on %s within 15s", name, addr)
		}
	}
}

// stop asks the process to end and waits for it.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func writeFile(dir, name, text string) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}
