package prober

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events/config"
)

func TestICMPCheckOfLoopbackPassesWhereTheMachineAllowsPing(t *testing.T) {
	o := Probe(context.Background(), target(t, "icmp", "127.0.0.1:0", func(k *config.Check) {
		k.Timeout = config.Duration(time.Second)
	}), testCredentialDirs(t))
	if o.Class == ClassPermission {
		t.Skipf("this machine allows neither ping sockets nor raw sockets: %s", o.Err)
	}
	if !o.OK {
		t.Fatalf("ping 127.0.0.1: class %q: %s", o.Class, o.Err)
	}
	if o.Latency <= 0 || o.Latency > time.Second {
		t.Errorf("latency %s is not a loopback round trip", o.Latency)
	}
}

func TestICMPChecksRunConcurrentlyEachSeeingOnlyItsOwnReply(t *testing.T) {
	const n = 20
	done := make(chan Outcome, n)
	for range n {
		go func() {
			done <- Probe(context.Background(), target(t, "icmp", "127.0.0.1:0", nil), testCredentialDirs(t))
		}()
	}
	for range n {
		o := <-done
		if o.Class == ClassPermission {
			t.Skipf("this machine allows neither ping sockets nor raw sockets: %s", o.Err)
		}
		if !o.OK {
			t.Errorf("concurrent ping failed: class %q: %s", o.Class, o.Err)
		}
	}
}
