package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/redact"
	"github.com/rs/zerolog"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `usage: detour COMMAND [flags]

Run everything in one process (embedded JetStream; the demo when no --config):
  up          [--config FILE] [--dns-addr ADDR] [--data-dir DIR] [--nats-port N] [--log-format console|json]

Run one role against a NATS server or cluster:
  prober      --region R [--name N] [--nats URL] [--config FILE]
  decider     [--name N] [--nats URL] [--config FILE]
  dns         [--addr ADDR] [--data-dir DIR] [--name N] [--nats URL] [--config FILE]
  edge        --name EDGE [--region R] [--resolver ADDR] [--nats URL] [--config FILE]
  controller  [--name N] [--nats URL] [--config FILE]

Operate:
  plan FILE                                what FILE would change, field by field, and in the answers now
  apply FILE [--expect-version N] [-m WHY] validate FILE and make it the active configuration
  config get [--version N]                 print the active (or any kept) version, who applied it and why
  config history                           every kept version: when, who, why
  check FILE                               validate FILE and print every problem
  override set APP POOL [ENDPOINT] --action force_up|force_down|drain --reason TEXT
  override clear APP POOL [ENDPOINT] --reason TEXT
  override list                            the overrides in force, who set them and why
  query NAME [TYPE] [--server ADDR] [--watch]
  backend [--name N] [--listen ADDR]       serve a demo application instance

Without --config, a role reads the active configuration from the CONFIG stream.
`

// errUsage marks errors that exit with status 2.
type errUsage struct{ error }

func usageErr(format string, args ...any) error { return errUsage{fmt.Errorf(format, args...)} }

// Main runs the command line args and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	stderr = redact.Writer(stderr) // logs and errors: no URL's password reaches the terminal
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "detour: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var ue errUsage
	var ce *config.Error
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce):
		fmt.Fprintf(stderr, "detour %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "detour %s: %v\n", args[0], err)
		return exitFailure
	}
}

type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

var commands map[string]command

func init() {
	commands = map[string]command{
		"up": runUp, "prober": runProber, "decider": runDecider, "dns": runDNS, "edge": runEdge,
		"controller": runController, "apply": runApply, "check": runCheck,
		"plan": runPlan, "config": runConfig, "override": runOverride,
		"query": runQuery, "backend": runBackend,
	}
}

// common are the flags every role shares.
type common struct {
	natsURL    string
	configPath string
	logFormat  string
	logLevel   string
}

func (c *common) register(fs *flag.FlagSet, withNATS bool) {
	if withNATS {
		fs.StringVar(&c.natsURL, "nats", envOr("DETOUR_NATS", "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated ($DETOUR_NATS)")
		fs.StringVar(&c.configPath, "config", "", "configuration file (default: the active one on the CONFIG stream)")
	}
	fs.StringVar(&c.logFormat, "log-format", "console", "log format: console or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

func (c *common) logger(stderr io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(c.logLevel)
	if err != nil || c.logLevel == "" {
		return zerolog.Logger{}, usageErr("--log-level: want debug, info, warn or error, got %q", c.logLevel)
	}
	var w io.Writer
	switch c.logFormat {
	case "json":
		w = stderr
	case "console":
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Logger{}, usageErr("--log-format: want console or json, got %q", c.logFormat)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage{err}
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envInt is the integer in $key, or def when it is unset or not a number.
func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "detour"
	}
	return strings.Split(h, ".")[0]
}
