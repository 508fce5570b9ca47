package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// isReset reports whether err is a connection reset by its peer.
func isReset(err error) bool {
	for _, e := range resetErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// A side of a spliced connection that aborts it (a reset) has the other side's connection reset
// too, at once: an instance that resets mid-answer must not have its client see a clean end,
// which it would take for the whole answer; a client that resets must not leave the instance
// with a half-close it may wait on, and the edge holding both connections until tcp_idle.
func TestATCPConnectionResetOnOneSideIsResetOnTheOther(t *testing.T) {
	for _, resetter := range []string{"instance", "client"} {
		t.Run("the "+resetter+" resets", func(t *testing.T) {
			client, clientEdge := tcpPair(t)
			upEdge, up := tcpPair(t)
			done := make(chan struct{})
			go func() { spliceBoth(clientEdge, upEdge, time.Hour); close(done) }()
			from, other := up, client
			if resetter == "client" {
				from, other = client, up
			}
			if _, err := from.Write([]byte("partial")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len("partial"))
			_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(other, got); err != nil {
				t.Fatalf("read what the %s sent: %v", resetter, err)
			}
			_ = from.SetLinger(0)
			_ = from.Close()
			if n, err := other.Read(make([]byte, 1)); !isReset(err) {
				t.Fatalf("the other side read %d bytes and %v after the %s reset, want a reset", n, err, resetter)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the splice still held both connections 5s after a reset, want it ended at once")
			}
		})
	}
}

// A side that resets while the other's bytes are on their way to it (a client aborting a
// download, an instance aborting an upload) has the other side reset too, not half-closed:
// the edge's write to it is told of the reset in place of the read, which then finds only its
// end and passed it on as a clean end of the stream before the edge closed both connections.
func TestATCPConnectionResetWhileBytesFlowToItIsResetOnTheOther(t *testing.T) {
	for _, resetter := range []string{"client", "instance"} {
		t.Run("the "+resetter+" resets", func(t *testing.T) {
			for round := range 8 {
				client, clientEdge := tcpPair(t)
				upEdge, up := tcpPair(t)
				done := make(chan struct{})
				go func() {
					// As handle does once both directions ended.
					defer close(done)
					defer upEdge.Close()
					defer clientEdge.Close()
					spliceBoth(clientEdge, upEdge, time.Hour)
				}()
				from, other := client, up
				if resetter == "instance" {
					from, other = up, client
				}
				// The other side sends until every buffer on the way is full and the edge waits
				// writing to the side that then resets; it only reads from there on.
				chunk := make([]byte, 64<<10)
				_ = other.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
				for {
					if _, err := other.Write(chunk); err != nil {
						if !isTimeout(err) {
							t.Fatalf("round %d: write before the reset: %v", round, err)
						}
						break
					}
				}
				_ = from.SetLinger(0)
				_ = from.Close()
				_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := other.Read(make([]byte, 1)); !isReset(err) {
					t.Fatalf("round %d: the other side read %d bytes and %v after the %s reset, want a reset", round, n, err, resetter)
				}
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: the splice still held both connections 5s after a reset", round)
				}
			}
		})
	}
}

// A large answer followed by a clean close reaches the client whole, then its end: a FIN is
// passed on as a half-close, never as a reset, whether or not the client half-closed first.
func TestALargeTCPAnswerFollowedByACleanCloseArrivesWhole(t *testing.T) {
	answer := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	for _, halfCloses := range []bool{false, true} {
		t.Run(fmt.Sprintf("client half-closes first: %v", halfCloses), func(t *testing.T) {
			client, clientEdge := tcpPair(t)
			upEdge, up := tcpPair(t)
			done := make(chan struct{})
			go func() { spliceBoth(clientEdge, upEdge, time.Hour); close(done) }()
			if _, err := client.Write([]byte("request")); err != nil {
				t.Fatal(err)
			}
			if halfCloses {
				_ = client.CloseWrite()
			}
			go func() {
				_, _ = io.ReadFull(up, make([]byte, len("request")))
				if halfCloses {
					_ = up.SetReadDeadline(time.Now().Add(5 * time.Second))
					if n, err := up.Read(make([]byte, 1)); err != io.EOF {
						t.Errorf("the instance read %d bytes and %v after the client's half-close, want EOF", n, err)
					}
				}
				_, _ = up.Write(answer)
				_ = up.Close()
			}()
			_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(client)
			if err != nil || !bytes.Equal(got, answer) {
				t.Fatalf("the client read %d bytes and %v, want the %d bytes of the answer and its end", len(got), err, len(answer))
			}
			_ = client.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the splice still held both connections 5s after both ended")
			}
		})
	}
}
