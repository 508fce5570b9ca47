package prober

import (
	"net"
	"strconv"
	"testing"

	"github.com/detourdev/detour/events/config"
)

func TestABareIPEndpointIsCheckedOnCheckPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	cfg, err := config.Parse("x.yaml", []byte(`
zones: [{name: demo.test}]
apps:
  - name: db
    fqdn: db.demo.test
    check: {type: tcp, port: `+strconv.Itoa(port)+`, timeout: 500ms, interval: 1s}
    pools: [{name: a, endpoints: [{address: 127.0.0.1}]}]
  - name: ping
    fqdn: ping.demo.test
    check: {type: icmp}
    pools: [{name: a, endpoints: [{address: "::1"}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	ts := Targets(cfg)
	if len(ts) != 2 || ts[0].Dial.String() != l.Addr().String() || ts[0].Endpoint != "127-0-0-1" || ts[1].Dial.Addr().String() != "::1" {
		t.Fatalf("targets = %+v, want db dialled on %s and ping on ::1", ts, l.Addr())
	}
	runCases(t, []checkCase{{name: "the check connects to check.port", target: ts[0], wantOK: true}})
}
