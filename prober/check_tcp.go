package prober

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/detourdev/detour/events/config"
)

// tcpChecker connects, and when the check says so writes Send and reads until Expect appears.
type tcpChecker struct {
	addr netip.AddrPort
	send []byte
	// sendFile, when set, holds what to send instead of send.
	sendFile *config.WatchedFile
	expect   []byte
	dialer   net.Dialer
}

// newTCPChecker prepares t's tcp check, with what it sends read from wherever the check says:
// the environment or the check itself (config.Check.ReadSend) once per configuration, a file
// (from files, one configuration's) again as it changes.
func newTCPChecker(t Target, files *checkFiles) (*tcpChecker, error) {
	send, err := t.Check.ReadSend()
	if err != nil {
		return nil, err
	}
	c := &tcpChecker{
		addr:   t.Dial,
		send:   []byte(send),
		expect: []byte(t.Check.Expect),
		dialer: net.Dialer{KeepAlive: -1},
	}
	if t.Check.SendFile != "" {
		c.sendFile = files.send(t.Check.SendFile)
	}
	return c, nil
}

func (c *tcpChecker) run(ctx context.Context) Outcome {
	send := c.send
	if c.sendFile != nil {
		v := c.sendFile.Load()
		if v.Err != nil {
			return failure(ClassError, fmt.Errorf("check.send_file: %w", v.Err))
		}
		send = []byte(v.S)
	}
	if len(send) == 0 && len(c.expect) == 0 {
		if err := connectOnly(ctx, &c.dialer, c.addr); err != nil {
			return failure(classify(err), err)
		}
		return Outcome{OK: true}
	}
	conn, err := c.dialer.DialTCP(ctx, "tcp", netip.AddrPort{}, c.addr)
	if err != nil {
		return failure(classify(err), err)
	}
	defer abort(conn)
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return failure(ClassError, fmt.Errorf("set deadline: %w", err))
		}
	}
	// The deadline bounds the conversation by the check's timeout; a context cancelled before
	// it (a stopping worker) ends it then, where a write to a peer that read nothing, or a read
	// from one that answered nothing, went on to the timeout (up to the interval, 24 h at most).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return failure(classify(err), fmt.Errorf("send: %w", err))
		}
	}
	if len(c.expect) == 0 {
		return Outcome{OK: true}
	}
	return c.readExpect(conn)
}

// dialOnly connects with d and resets the connection: what connectOnly does by hand.
func dialOnly(ctx context.Context, d *net.Dialer, addr netip.AddrPort) error {
	conn, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, addr)
	if err != nil {
		return err
	}
	abort(conn)
	return nil
}

// readExpect reads until expect occurs within the first bodyLimit bytes.
func (c *tcpChecker) readExpect(conn *net.TCPConn) Outcome {
	buf := make([]byte, 0, 512)
	chunk := make([]byte, 512)
	for len(buf) < bodyLimit {
		n, err := conn.Read(chunk[:min(len(chunk), bodyLimit-len(buf))])
		buf = append(buf, chunk[:n]...)
		if bytes.Contains(buf, c.expect) {
			return Outcome{OK: true}
		}
		if err != nil {
			cl := classify(err)
			if len(buf) > 0 && (cl == ClassTimeout || cl == ClassClosed) {
				return failure(ClassExpect, fmt.Errorf("read %q, want %q", clip(buf), c.expect))
			}
			return failure(cl, fmt.Errorf("read reply: %w", err))
		}
	}
	return failure(ClassExpect, fmt.Errorf("the first %d bytes lack %q", bodyLimit, c.expect))
}

// abort closes a check's connection with a reset, as HAProxy's checks do: the peer learns at
// once that nothing follows, and neither side keeps the socket in TIME_WAIT, which at thousands
// of checks a second would fill the port and socket tables.
func abort(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// clip shortens what a peer sent for an error message.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}
