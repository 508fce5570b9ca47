package cli_test

import (
	"net"
	"strings"
	"testing"
)

func TestANATSPasswordNeverReachesTheTerminal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: the connection is refused
	code, _, stderr := run("override", "list", "--nats", "nats://operator:op-s3cret@"+addr)
	if code != 1 || !strings.Contains(stderr, "nats://operator:REDACTED@"+addr) || strings.Contains(stderr, "op-s3cret") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 1 and the URL with its password redacted", code, stderr)
	}
}
