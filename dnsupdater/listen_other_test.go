//go:build !unix || solaris

package dnsupdater

import (
	"runtime"
	"testing"
)

func TestSeveralUDPSocketsOnOnePortAreRefusedWhereSOReusePortIsMissing(t *testing.T) {
	_, err := listen("127.0.0.1:0", 2)
	want := "UDPSockets 2: several UDP sockets cannot share one port on " + runtime.GOOS + ", where Detour cannot set SO_REUSEPORT: use 1"
	if err == nil || err.Error() != want {
		t.Fatalf("listen with 2 UDP sockets: got %v, want %q", err, want)
	}
	l, err := listen("127.0.0.1:0", defaultUDPSockets())
	if err != nil {
		t.Fatalf("listen with the default: %v", err)
	}
	defer l.close()
	if len(l.udp) != 1 {
		t.Errorf("the default bound %d UDP sockets, want 1", len(l.udp))
	}
}
