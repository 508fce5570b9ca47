package cli_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

func TestHealthExits0OnlyWhenWhatItChecksAnswers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	t.Cleanup(failing.Close)
	closed, refused := eventstest.ClosedPort(t), eventstest.RefusedUDP(t)

	for _, c := range []struct {
		args []string
		want int
		out  string
	}{
		{[]string{"--dns", pc.LocalAddr().String()}, 0, "healthy"},
		{[]string{"--dns", refused, "--timeout", "300ms"}, 1, "unhealthy"},
		{[]string{"--tcp", ok.Listener.Addr().String()}, 0, "healthy"},
		{[]string{"--tcp", closed}, 1, "unhealthy"},
		{[]string{"--http", ok.URL}, 0, "healthy"},
		{[]string{"--http", failing.URL}, 1, "status 503"},
		{[]string{}, 2, "want exactly one of --dns, --tcp and --http"},
		{[]string{"--tcp", closed, "--http", ok.URL}, 2, "want exactly one"},
	} {
		code, stdout, stderr := run(append([]string{"health"}, c.args...)...)
		if code != c.want || !strings.Contains(stdout+stderr, c.out) {
			t.Errorf("detour health %s: exit %d, output %q; want %d and %q", strings.Join(c.args, " "), code, stdout+stderr, c.want, c.out)
		}
	}
}
