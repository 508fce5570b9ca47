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

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/events/logs"
	"github.com/detourdev/detour/events/redact"
	"github.com/rs/zerolog"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// commandWait is the default of --timeout (timeoutFlag), which bounds an operator's one-shot
// command (apply, plan, config, override, drill plan and rollback, the start of a drill run) and
// its calls to the API. Its reads of the cluster wait as long for an answer: left without a
// deadline, a read of the active version gave up after a second (events.LeaderLast,
// events.AnyLast), and a cluster slowed by load failed a plan, a config get and an apply with
// --expect-version.
const commandWait = 30 * time.Second

// timeoutFlag registers --timeout: how long an operator's command waits for the cluster, or the
// API, to answer, default commandWait. checkTimeout refuses a value that is not positive.
func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", commandWait, "how long the command waits for the NATS cluster (or the API) to answer, in all, e.g. 5s or 2m")
}

// checkTimeout refuses a --timeout of 0 or less, which would fail the command before it asked.
func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usageErr("--timeout: want a positive duration such as 30s, got %s", d)
	}
	return nil
}

// unanswered names the cluster in err when err is its silence past ctx's bound, the command's
// --timeout (wait): events.Unanswered, of a deadline ctx's own.
func unanswered(ctx context.Context, wait time.Duration, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return events.Unanswered(wait, err)
}

const usage = `usage: detour COMMAND [flags]

Run everything in one process (embedded JetStream; the demo when no --config):
  up          [--config FILE] [--dns-addr ADDR] [--data-dir DIR] [--nats-port N] [--regions R,R]

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
  token create NAME --scope read|write [--file FILE]   a bearer token for the API, shown once
  check FILE                               validate FILE and print every problem
  override set APP POOL [ENDPOINT] --action force_up|force_down|drain --reason TEXT
  override clear APP POOL [ENDPOINT] --reason TEXT
  override list                            the overrides in force, who set them and why
  query NAME [TYPE] [--server ADDR] [--watch]
  events [--stream S] [--subject F] [--since D] [--follow] [--json]
  backend [--name N] [--listen ADDR]       serve a demo application instance
  replay [--from 15m] [--to T] [--app A] [--endpoint E] [--region R] [--format text|json|html] [--what-if 'fall=5,…']
                                           the timeline of an incident, its phases, and what other thresholds would have done
  drill plan|run FILE, drill rollback ID   preview, run and score a DR drill of simulated failures
  health --dns ADDR | --tcp ADDR | --http URL   exit 0 when it answers (container healthchecks)
  help [COMMAND]                           a command's usage, flags and an example

Every command but check, query, backend and help takes --log-format auto|console|json (auto:
console with colours on a terminal, JSON elsewhere) and --log-level debug|info|warn|error.
plan, apply, config, override and drill take --timeout D: how long they wait for the cluster (or
the API) to answer, in all (default 30s; a drill run, for its start); replay too, for each answer.
Without --config, a role reads the active configuration from the CONFIG stream.
Every role takes --metrics-addr ADDR to serve Prometheus metrics on /metrics; up serves all of
its roles' on 127.0.0.1:9464 unless --metrics-addr "" is given.
Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.
`

// errUsage marks errors that exit with status 2.
type errUsage struct{ error }

func usageErr(format string, args ...any) error { return errUsage{fmt.Errorf(format, args...)} }

// Main runs the command line args and returns the process exit status: 0 success, 1 runtime
// failure, 2 usage or configuration error.
func Main(args []string, stdout, stderr io.Writer) int {
	stderr = logs.Like(redact.Writer(stderr), stderr) // logs and errors: no URL's password reaches the terminal
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "detour: unknown command %q; the commands are listed by \"detour help\"\n", args[0])
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var h errHelp
	var ue errUsage
	var ce *config.Error
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &h):
		printHelp(stdout, args[0], h.fs)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "detour %s: %v\nsee \"detour help %s\"\n", args[0], err, args[0])
		return exitUsage
	case errors.As(err, &ce):
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
		"plan": runPlan, "config": runConfig, "token": runToken, "override": runOverride,
		"query": runQuery, "backend": runBackend, "events": runEvents,
	}
	commands["replay"] = runReplay
	commands["drill"] = runDrill
	commands["health"] = runHealth
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
	fs.StringVar(&c.logFormat, "log-format", logs.FormatAuto, "log format: auto (console on a terminal, else json), console or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

func (c *common) logger(stderr io.Writer) (zerolog.Logger, error) {
	if err := c.check(); err != nil {
		return zerolog.Logger{}, err
	}
	return logs.New(stderr, c.logFormat, c.logLevel)
}

// check validates the shared flags, so a command can refuse them before it starts anything.
func (c *common) check() error {
	if _, err := logs.ParseLevel(c.logLevel); err != nil {
		return usageErr("--log-level: %v", err)
	}
	if err := logs.CheckFormat(c.logFormat); err != nil {
		return usageErr("--log-format: %v", err)
	}
	if c.natsURL != "" {
		for _, u := range strings.Split(c.natsURL, ",") {
			if err := checkNATSURL(u); err != nil {
				return usageErr("--nats: %v", err)
			}
		}
	}
	return nil
}

// parse parses args into fs. Asked for --help it returns an errHelp (Main prints the usage on
// stdout); a mistake is an errUsage, printed on stderr by Main.
func parse(fs *flag.FlagSet, args []string, _ io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp{fs}
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
