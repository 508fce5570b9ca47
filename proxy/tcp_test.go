package proxy

import (
	"net"
	"testing"
	"time"
)

// A client that reads steadily but slowly, and sends nothing: every byte it takes is progress,
// so tcp_idle (no byte either way) must not end its connection, even when one write to it takes
// longer than tcp_idle.
func TestASlowButProgressingTCPReaderIsNotCutByTCPIdle(t *testing.T) {
	client, clientEdge := net.Pipe()
	upEdge, up := net.Pipe()
	go spliceBoth(clientEdge, upEdge, 300*time.Millisecond)
	defer client.Close()
	defer up.Close()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := up.Write(chunk); err != nil {
				return
			}
		}
	}()
	// 1 KiB every 10ms: about 100 KiB/s, a 32 KiB write to it takes ~320ms.
	buf := make([]byte, 1<<10)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(3 * time.Second)
	got := 0
	for time.Now().Before(end) {
		<-tick.C
		n, err := client.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("the connection ended after %d bytes read steadily (%v), want it open while bytes flow", got, err)
		}
	}
}

// Neither side sends: tcp_idle still ends both connections.
func TestASilentTCPConnectionEndsAfterTCPIdle(t *testing.T) {
	client, clientEdge := net.Pipe()
	upEdge, up := net.Pipe()
	defer client.Close()
	defer up.Close()
	done := make(chan struct{})
	go func() { spliceBoth(clientEdge, upEdge, 200*time.Millisecond); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a silent connection was still open 5s on, want it ended after tcp_idle (200ms)")
	}
}
