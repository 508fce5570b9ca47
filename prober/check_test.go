package prober

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/eventstest"
)

// testCredentialDirs allows the files the tests write, in their temporary directories.
func testCredentialDirs(t testing.TB) config.CredentialDirs {
	t.Helper()
	d, err := config.NewCredentialDirs(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// target builds a target of check type kind against addr with a 1s timeout, then applies edit.
func target(t *testing.T, kind, addr string, edit func(*config.Check)) Target {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatalf("parse %q: %v", addr, err)
	}
	k := config.Check{Type: kind, Path: "/", Interval: config.Duration(2 * time.Second), Timeout: config.Duration(time.Second)}
	if edit != nil {
		edit(&k)
	}
	if k.Port != 0 {
		ap = netip.AddrPortFrom(ap.Addr(), uint16(k.Port))
	}
	return Target{App: "shop", Pool: "west", Endpoint: "a", Address: addr, Dial: ap, Check: k}
}

// tcpServer accepts connections on loopback and hands each to serve.
func tcpServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); serve(c) })
		}
	})
	return l.Addr().String()
}

// resetConn closes c with an RST instead of a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

type checkCase struct {
	name      string
	target    Target
	wantOK    bool
	wantClass string
	wantErr   string
}

func runCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Probe(context.Background(), tc.target, testCredentialDirs(t))
			if o.OK != tc.wantOK || o.Class != tc.wantClass {
				t.Fatalf("outcome = ok %v class %q (%s), want ok %v class %q", o.OK, o.Class, o.Err, tc.wantOK, tc.wantClass)
			}
			if !strings.Contains(o.Err, tc.wantErr) {
				t.Errorf("error %q does not mention %q", o.Err, tc.wantErr)
			}
			// A check that cannot be built does not run, so it takes no time.
			if ran := tc.wantClass != ClassError; ran && (o.Latency <= 0 || o.Latency > 3*time.Second) {
				t.Errorf("latency %s is not the time the check took", o.Latency)
			}
		})
	}
}

func TestHTTPCheckOutcomes(t *testing.T) {
	var (
		mu       sync.Mutex
		lastHost string
		lastHdr  string
		lastMeth string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastHost, lastHdr, lastMeth = r.Host, r.Header.Get("X-Probe"), r.Method
		mu.Unlock()
		switch r.URL.Path {
		case "/healthz":
			fmt.Fprint(w, "status: ok")
		case "/unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/late-marker":
			fmt.Fprint(w, strings.Repeat("x", bodyLimit)+"status: ok")
		case "/slow":
			<-r.Context().Done()
		case "/hangup":
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		case "/reset":
			c, _, _ := w.(http.Hijacker).Hijack()
			resetConn(c)
		case "/garbage":
			c, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("SMTP READY\r\n\r\n")
			buf.Flush()
			c.Close()
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	path := func(p string) func(*config.Check) { return func(k *config.Check) { k.Path = p } }
	runCases(t, []checkCase{
		{name: "a 200 passes", target: target(t, "http", addr, path("/healthz")), wantOK: true},
		{name: "a 503 fails with status", target: target(t, "http", addr, path("/unavailable")),
			wantClass: ClassStatus, wantErr: "status 503, want 200-399"},
		{name: "a status outside the expected ranges fails", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/healthz"
			k.ExpectStatus = []string{"204", "300-399"}
		}), wantClass: ClassStatus, wantErr: "status 200, want 204,300-399"},
		{name: "a redirect is judged, not followed", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/moved"
			k.ExpectStatus = []string{"200"}
		}), wantClass: ClassStatus, wantErr: "status 302"},
		{name: "the body holding the string passes", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/healthz"
			k.BodyContains = "status: ok"
		}), wantOK: true},
		{name: "a body without the string fails with body", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/healthz"
			k.BodyContains = "status: degraded"
		}), wantClass: ClassBody, wantErr: `lack "status: degraded"`},
		{name: "the string beyond the first 5120 bytes does not count", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/late-marker"
			k.BodyContains = "status: ok"
		}), wantClass: ClassBody, wantErr: "first 5120 bytes"},
		{name: "a closed port fails with refused", target: target(t, "http", eventstest.ClosedPort(t), nil),
			wantClass: ClassRefused, wantErr: "connection refused"},
		{name: "no answer within the timeout fails with timeout", target: target(t, "http", addr, func(k *config.Check) {
			k.Path = "/slow"
			k.Timeout = config.Duration(100 * time.Millisecond)
		}), wantClass: ClassTimeout},
		{name: "a server that hangs up fails with closed", target: target(t, "http", addr, path("/hangup")),
			wantClass: ClassClosed, wantErr: "EOF"},
		{name: "a server that resets fails with reset", target: target(t, "http", addr, path("/reset")),
			wantClass: ClassReset, wantErr: "reset"},
		{name: "a server that speaks another protocol fails with protocol", target: target(t, "http", addr, path("/garbage")),
			wantClass: ClassProtocol, wantErr: "malformed HTTP"},
	})

	t.Run("the method, host header and headers are sent", func(t *testing.T) {
		o := Probe(context.Background(), target(t, "http", addr, func(k *config.Check) {
			k.Path, k.Method, k.Host = "/healthz", "HEAD", "shop.demo.test"
			k.Headers = map[string]string{"X-Probe": "detour"}
		}), testCredentialDirs(t))
		mu.Lock()
		defer mu.Unlock()
		if !o.OK || lastMeth != "HEAD" || lastHost != "shop.demo.test" || lastHdr != "detour" {
			t.Errorf("ok %v (%s); server saw method %q host %q X-Probe %q", o.OK, o.Err, lastMeth, lastHost, lastHdr)
		}
	})

	t.Run("a header from a file or the environment is read and sent", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "probe")
		if err := os.WriteFile(file, []byte("from-the-file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DETOUR_TEST_PROBE", "from-the-environment")
		for _, tc := range []struct {
			edit func(k *config.Check)
			want string
		}{
			{func(k *config.Check) { k.HeadersFile = map[string]string{"X-Probe": file} }, "from-the-file"},
			{func(k *config.Check) { k.HeadersEnv = map[string]string{"X-Probe": "DETOUR_TEST_PROBE"} }, "from-the-environment"},
		} {
			o := Probe(context.Background(), target(t, "http", addr, func(k *config.Check) { k.Path = "/healthz"; tc.edit(k) }), testCredentialDirs(t))
			mu.Lock()
			got := lastHdr
			mu.Unlock()
			if !o.OK || got != tc.want {
				t.Errorf("ok %v (%s); server saw X-Probe %q, want %q", o.OK, o.Err, got, tc.want)
			}
		}
		o := Probe(context.Background(), target(t, "http", addr, func(k *config.Check) {
			k.HeadersEnv = map[string]string{"X-Probe": "DETOUR_TEST_UNSET"}
		}), testCredentialDirs(t))
		if want := "check.headers_env.X-Probe: $DETOUR_TEST_UNSET is not set in this process's environment"; o.OK || o.Class != ClassError || o.Err != want {
			t.Errorf("without the variable: ok %v class %q error %q, want %q", o.OK, o.Class, o.Err, want)
		}
	})

	t.Run("the check's port replaces the endpoint's", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(addr)
		var p int
		fmt.Sscan(port, &p)
		tg := target(t, "http", eventstest.ClosedPort(t), func(k *config.Check) { k.Port, k.Path = p, "/healthz" })
		if o := Probe(context.Background(), tg, testCredentialDirs(t)); !o.OK {
			t.Errorf("check on port %d failed: %s", p, o.Err)
		}
	})
}

func TestAFailedHTTPChecksErrorDoesNotRepeatATokenInItsPath(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		o := Probe(context.Background(), target(t, scheme, eventstest.ClosedPort(t), func(k *config.Check) { k.Path = "/healthz?api_key=k-0123456789" }), testCredentialDirs(t))
		if o.OK || o.Class != ClassRefused || strings.Contains(o.Err, "k-0123456789") {
			t.Errorf("%s: outcome ok %v class %q error %q, want refused without the api_key", scheme, o.OK, o.Class, o.Err)
		}
	}
}

func TestHTTPSCheckOutcomes(t *testing.T) {
	var (
		mu  sync.Mutex
		sni string
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	srv.TLS = &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		sni = h.ServerName
		mu.Unlock()
		return nil, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	// Workers load the system's roots before their first check; so does this test.
	_, _ = x509.SystemCertPool()
	addr := srv.Listener.Addr().String()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(plain.Close)
	// A server that reads the ClientHello and answers a record that says it holds a handshake
	// message, whose header is then nonsense; and one that never answers it.
	garbled := tcpServer(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = c.Write([]byte("\x16\x03\x03\x00\x05hello"))
	})
	stalled := tcpServer(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = c.Read(make([]byte, 1))
	})

	runCases(t, []checkCase{
		{name: "a certificate no root vouches for fails with tls", target: target(t, "https", addr, nil),
			wantClass: ClassTLS, wantErr: "certificate"},
		{name: "skipping verification passes", target: target(t, "https", addr, func(k *config.Check) {
			k.InsecureSkipVerify = true
		}), wantOK: true},
		{name: "a plain HTTP server fails with tls", target: target(t, "https", plain.Listener.Addr().String(), func(k *config.Check) {
			k.InsecureSkipVerify = true
		}), wantClass: ClassTLS},
		{name: "a handshake answered with what is no handshake message fails with tls", target: target(t, "https", garbled, func(k *config.Check) {
			k.InsecureSkipVerify = true
		}), wantClass: ClassTLS, wantErr: "tls: handshake message of length"},
		{name: "a handshake that stalls fails with timeout", target: target(t, "https", stalled, func(k *config.Check) {
			k.InsecureSkipVerify, k.Timeout = true, config.Duration(200*time.Millisecond)
		}), wantClass: ClassTimeout},
	})

	t.Run("the host is sent as SNI and server_name overrides it", func(t *testing.T) {
		for _, tc := range []struct{ host, serverName, want string }{
			{"shop.demo.test", "", "shop.demo.test"},
			{"shop.demo.test", "tls.demo.test", "tls.demo.test"},
			{"shop.demo.test:8443", "", "shop.demo.test"}, // a Host with its port: the name alone
			{"", "", ""},
		} {
			o := Probe(context.Background(), target(t, "https", addr, func(k *config.Check) {
				k.Host, k.ServerName, k.InsecureSkipVerify = tc.host, tc.serverName, true
			}), testCredentialDirs(t))
			mu.Lock()
			got := sni
			mu.Unlock()
			if !o.OK || got != tc.want {
				t.Errorf("host %q server_name %q: ok %v (%s), SNI %q, want %q", tc.host, tc.serverName, o.OK, o.Err, got, tc.want)
			}
		}
	})

	t.Run("the result carries the days left on the certificate", func(t *testing.T) {
		o := Probe(context.Background(), target(t, "https", addr, func(k *config.Check) { k.InsecureSkipVerify = true }), testCredentialDirs(t))
		want := time.Until(srv.Certificate().NotAfter).Hours() / 24
		if o.CertExpiryDays == nil || *o.CertExpiryDays < want-1 || *o.CertExpiryDays > want+1 {
			t.Errorf("cert expiry days = %v, want about %.0f", o.CertExpiryDays, want)
		}
	})
}

// TestAnHTTPCheckReadingTheBodyOfA101AnswerEndsWithItsTimeout: after a 101 the Transport hands
// the connection over as the body, and a check whose body_contains reads it must still end
// with its timeout when the peer then says nothing, or it would hold its goroutine and
// connection, and its endpoint would never be checked again.
func TestAnHTTPCheckReadingTheBodyOfA101AnswerEndsWithItsTimeout(t *testing.T) {
	addr, _ := rawServer(t, "127.0.0.1:0", func(c *net.TCPConn) {
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhel"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // then nothing, for longer than the check may take
		_, _ = c.Read(make([]byte, 1))
	})
	done := make(chan Outcome, 1)
	go func() {
		done <- Probe(context.Background(), target(t, "http", addr, func(k *config.Check) {
			k.ExpectStatus, k.BodyContains = []string{"101"}, "hello"
			k.Timeout = config.Duration(200 * time.Millisecond)
		}), testCredentialDirs(t))
	}()
	select {
	case o := <-done:
		if o.OK || o.Class != ClassTimeout {
			t.Errorf("outcome = ok %v class %q (%s), want a timeout", o.OK, o.Class, o.Err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the check of 200ms still runs after 3s")
	}
}

func TestTCPCheckOutcomes(t *testing.T) {
	redis := tcpServer(t, func(c net.Conn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if string(buf[:n]) == "PING\r\n" {
			c.Write([]byte("+PONG\r\n"))
		} else {
			c.Write([]byte("-ERR unknown command\r\n"))
		}
	})
	silent := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	hangup := tcpServer(t, func(c net.Conn) {})
	reset := tcpServer(t, func(c net.Conn) {
		buf := make([]byte, 64)
		_, _ = c.Read(buf)
		resetConn(c)
	})
	ping := func(send, expect string) func(*config.Check) {
		return func(k *config.Check) {
			k.Send, k.Expect, k.Timeout = send, expect, config.Duration(300*time.Millisecond)
		}
	}
	runCases(t, []checkCase{
		{name: "a connect passes", target: target(t, "tcp", silent, nil), wantOK: true},
		{name: "a closed port fails with refused", target: target(t, "tcp", eventstest.ClosedPort(t), nil),
			wantClass: ClassRefused, wantErr: "connection refused"},
		{name: "the expected reply passes", target: target(t, "tcp", redis, ping("PING\r\n", "+PONG")), wantOK: true},
		{name: "another reply fails with expect", target: target(t, "tcp", redis, ping("QUIT\r\n", "+PONG")),
			wantClass: ClassExpect, wantErr: `read "-ERR unknown command\r\n", want "+PONG"`},
		{name: "no reply within the timeout fails with timeout", target: target(t, "tcp", silent, ping("PING\r\n", "+PONG")),
			wantClass: ClassTimeout, wantErr: "i/o timeout"},
		{name: "a peer that hangs up before replying fails with closed", target: target(t, "tcp", hangup, ping("", "+OK")),
			wantClass: ClassClosed, wantErr: "EOF"},
		{name: "a peer that resets fails with reset", target: target(t, "tcp", reset, ping("PING\r\n", "+PONG")),
			wantClass: ClassReset, wantErr: "reset"},
	})

	t.Run("what a check sends is read as it is from a file or the environment", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "send")
		if err := os.WriteFile(file, []byte("PING\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DETOUR_TEST_SEND", "PING\r\n")
		for _, edit := range []func(k *config.Check){
			func(k *config.Check) { k.SendFile = file },
			func(k *config.Check) { k.SendEnv = "DETOUR_TEST_SEND" },
		} {
			if o := Probe(context.Background(), target(t, "tcp", redis, func(k *config.Check) { ping("", "+PONG")(k); edit(k) }), testCredentialDirs(t)); !o.OK {
				t.Errorf("check: %s %s, want the expected reply", o.Class, o.Err)
			}
		}
		o := Probe(context.Background(), target(t, "tcp", redis, func(k *config.Check) { k.SendEnv = "DETOUR_TEST_UNSET" }), testCredentialDirs(t))
		if want := "check.send_env: $DETOUR_TEST_UNSET is not set in this process's environment"; o.OK || o.Class != ClassError || o.Err != want {
			t.Errorf("without the variable: ok %v class %q error %q, want %q", o.OK, o.Class, o.Err, want)
		}
	})

	t.Run("a connect that gets no answer fails with timeout", func(t *testing.T) {
		addr := eventstest.Blackhole(t)
		o := Probe(context.Background(), target(t, "tcp", addr, func(k *config.Check) {
			k.Timeout = config.Duration(200 * time.Millisecond)
		}), testCredentialDirs(t))
		if o.OK {
			t.Skip("the kernel completed a connect beyond the backlog; cannot provoke a connect timeout here")
		}
		if o.Class != ClassTimeout {
			t.Errorf("class %q (%s), want timeout", o.Class, o.Err)
		}
	})
}

func TestClassifyNamesEveryNetworkFailure(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, ClassTimeout},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ClassTimeout},
		{op(syscall.ECONNREFUSED), ClassRefused},
		{op(syscall.ECONNRESET), ClassReset},
		{op(syscall.EPIPE), ClassReset},
		{op(syscall.EHOSTUNREACH), ClassUnreachable},
		{op(syscall.ENETUNREACH), ClassUnreachable},
		{op(syscall.EPERM), ClassPermission},
		{fmt.Errorf("handshake: %w", tls.AlertError(40)), ClassTLS},
		{fmt.Errorf("handshake: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), ClassTLS},
		{io.EOF, ClassClosed},
		{io.ErrUnexpectedEOF, ClassClosed},
		{errors.New("something else"), ClassError},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestAStalledHandshakeIsGivenUpWithItsCheck: an https check against a server that accepts
// and never answers the ClientHello fails with timeout, and its connection is closed then, not
// left to the Transport's own handshake timeout: at a check a second, an endpoint stalled so
// held 30 of the prober's connections and goroutines.
func TestAStalledHandshakeIsGivenUpWithItsCheck(t *testing.T) {
	var open atomic.Int64
	addr := tcpServer(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		_, _ = io.Copy(io.Discard, c) // until the prober closes it
	})
	tg := target(t, "https", addr, func(k *config.Check) {
		k.InsecureSkipVerify, k.Timeout = true, config.Duration(100*time.Millisecond)
	})
	for range 5 {
		if o := Probe(context.Background(), tg, testCredentialDirs(t)); o.Class != ClassTimeout {
			t.Fatalf("outcome %+v, want a timeout", o)
		}
	}
	eventstest.Eventually(t, 2*time.Second, func() bool { return open.Load() == 0 },
		"the checks' connections closed as they ended (%d open)", open.Load())
}

// TestABodyCheckPassesAsSoonAsTheStringArrives: a body_contains check against a server that
// sends the string and then holds its connection open (a page still coming, a stream) passes
// when the string arrives, its latency the server's, not at its timeout.
func TestABodyCheckPassesAsSoonAsTheStringArrives(t *testing.T) {
	addr := tcpServer(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + `{"status":"ok"`))
		_, _ = c.Read(make([]byte, 1)) // until the prober closes it
	})
	tg := target(t, "http", addr, func(k *config.Check) {
		k.BodyContains, k.Timeout = `"status":"ok"`, config.Duration(2*time.Second)
	})
	o := Probe(context.Background(), tg, testCredentialDirs(t))
	if !o.OK || o.Latency >= time.Second {
		t.Errorf("outcome ok %v (%s), latency %s; want it ok well within its 2 s timeout", o.OK, o.Err, o.Latency)
	}
}

// chunked reads from b at most n bytes a time.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// FuzzReadUntilFindsWhatReadAllFinds: reading a body until the string appears finds it exactly
// where reading its first bodyLimit bytes whole does, however the body comes in pieces.
func FuzzReadUntilFindsWhatReadAllFinds(f *testing.F) {
	f.Add([]byte(strings.Repeat("x", bodyLimit-3)+"status: ok"), "status: ok", uint16(7))
	f.Add([]byte(`{"status":"ok"}`), `"ok"`, uint16(1))
	f.Add([]byte("abc"), "abcd", uint16(2))
	f.Fuzz(func(t *testing.T, body []byte, want string, piece uint16) {
		if want == "" {
			return
		}
		got, err := readUntil(&chunked{b: body, n: int(piece%600) + 1}, want)
		if err != nil {
			t.Fatal(err)
		}
		whole := body[:min(len(body), bodyLimit)]
		if !bytes.HasPrefix(whole, got) {
			t.Fatalf("read %q, not a prefix of the body", got)
		}
		if strings.Contains(string(got), want) != strings.Contains(string(whole), want) {
			t.Fatalf("found %v in %q, whole %v", strings.Contains(string(got), want), got, strings.Contains(string(whole), want))
		}
	})
}

// A stopping worker cancels its checks: a tcp check ends then, not at its timeout, whether it is
// writing what it sends to a peer that reads nothing or reading for what it expects from one
// that answers nothing.
func TestATCPCheckEndsWhenItsContextIsCancelled(t *testing.T) {
	for _, tc := range []struct {
		name         string
		send, expect string
	}{
		{"writing to a peer that reads nothing", strings.Repeat("x", 64<<20), ""},
		{"reading from a peer that answers nothing", "PING\r\n", "+PONG"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The peer reads the first byte sent, then nothing more, and never answers.
			sending := make(chan struct{}, 1)
			quit := make(chan struct{})
			addr := tcpServer(t, func(c net.Conn) {
				if _, err := c.Read(make([]byte, 1)); err == nil {
					sending <- struct{}{}
				}
				<-quit
			})
			t.Cleanup(func() { close(quit) })
			ck, err := newTCPChecker(target(t, "tcp", addr, func(k *config.Check) {
				k.Send, k.Expect = tc.send, tc.expect
			}), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done := make(chan Outcome, 1)
			go func() { done <- ck.run(ctx) }()
			<-sending
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the check went on 10 s after its context was cancelled (its timeout is a minute)")
			}
		})
	}
}
