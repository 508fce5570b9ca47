package logs

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Formats are the values of --log-format.
const (
	// FormatAuto is console on a terminal and JSON elsewhere (files, pipes, journald).
	FormatAuto    = "auto"
	FormatConsole = "console"
	FormatJSON    = "json"
)

// formats sets zerolog's process-wide formats once: roles started in one process (detour up, a
// test) build their loggers while others already log.
var formats sync.Once

// New returns a root logger that writes to w in format (auto, console or json) at level (debug,
// info, warn or error). Colours are used only when w is a terminal and $NO_COLOR is unset.
// Durations are written in Go's syntax ("1.5s", "250ms") and times in UTC to the millisecond, as
// events carry them, by every logger of the process.
func New(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, err
	}
	if err := CheckFormat(format); err != nil {
		return zerolog.Logger{}, err
	}
	formats.Do(func() {
		zerolog.DurationFieldFormat = zerolog.DurationFormatString
		zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
		zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	})
	tty := IsTerminal(w)
	if format == FormatConsole || (format == FormatAuto && tty) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !tty || os.Getenv("NO_COLOR") != ""}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// CheckFormat reports whether format is one New accepts.
func CheckFormat(format string) error {
	switch format {
	case FormatAuto, FormatConsole, FormatJSON:
		return nil
	}
	return fmt.Errorf("want auto, console or json, got %q", format)
}

// ParseLevel reads debug, info, warn or error.
func ParseLevel(level string) (zerolog.Level, error) {
	switch level {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("want debug, info, warn or error, got %q", level)
}

// IsTerminal reports whether w is a terminal, or a writer Like one.
func IsTerminal(w io.Writer) bool {
	if t, ok := w.(terminal); ok {
		return t.tty
	}
	f, ok := w.(interface{ Fd() uintptr })
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Like returns w, which filters what it passes on to under, marked as a terminal when under is
// one, so New colours its output exactly when under is a terminal.
func Like(w, under io.Writer) io.Writer { return terminal{w, IsTerminal(under)} }

type terminal struct {
	io.Writer
	tty bool
}
