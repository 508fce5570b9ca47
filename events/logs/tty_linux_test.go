package logs

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal and returns its terminal end, which the logger writes to, and
// its controlling end, which reads what a terminal would show.
func openPTY(t *testing.T) (tty, ctl *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("name the pseudo-terminal: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty, ctl
}

// shown reads what the terminal received, until want appears or a second passes.
func shown(ctl *os.File, want string) string {
	var got bytes.Buffer
	buf := make([]byte, 4096)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && !bytes.Contains(got.Bytes(), []byte(want)) {
		_ = ctl.SetReadDeadline(deadline)
		n, err := ctl.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return got.String()
}

func TestATerminalGetsColouredTextUnlessNoColorIsSet(t *testing.T) {
	for _, c := range []struct {
		format, noColor string
		colour          bool
	}{
		{FormatAuto, "", true},
		{FormatConsole, "", true},
		{FormatAuto, "1", false},
	} {
		tty, ctl := openPTY(t)
		t.Setenv("NO_COLOR", c.noColor)
		if c.noColor == "" {
			os.Unsetenv("NO_COLOR")
		}
		log, err := New(tty, c.format, "info")
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Str("app", "shop").Msg("endpoint transition")
		got := shown(ctl, "endpoint transition")
		if !bytes.Contains([]byte(got), []byte("endpoint transition")) || bytes.HasPrefix([]byte(got), []byte("{")) {
			t.Errorf("--log-format %s on a terminal wrote %q, want console text", c.format, got)
		}
		if hasColour := bytes.Contains([]byte(got), []byte("\x1b[")); hasColour != c.colour {
			t.Errorf("--log-format %s on a terminal, NO_COLOR=%q: colour %v, want %v: %q", c.format, c.noColor, hasColour, c.colour, got)
		}
	}
}
