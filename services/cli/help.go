package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpText is each command's synopsis, what it does and an example; the flags are appended from
// the command's own flag set, so they cannot drift from what it parses.
var helpText = map[string]string{
	"up": `usage: detour up [--config FILE] [flags]

Runs everything in one process on an embedded JetStream server: the demo when no --config is
given, your configuration otherwise. Stops on Ctrl-C.

Example:
  detour up
  detour up --config detour.yaml --dns-addr 127.0.0.1:5300 --nats-port -1`,
	"prober": `usage: detour prober --region R [--name N] [--nats URL] [--config FILE] [flags]

Runs one prober worker of region R: it checks every endpoint and publishes each result.

Example:
  detour prober --region us-west --name p1 --nats nats://127.0.0.1:4222`,
	"decider": `usage: detour decider [--name N] [--nats URL] [--config FILE] [flags]

Runs one decider replica: it folds probe results into up/down transitions (run two or more).

Example:
  detour decider --name decider-1 --nats nats://127.0.0.1:4222`,
	"dns": `usage: detour dns [--addr ADDR] [--data-dir DIR] [--name N] [--nats URL] [--config FILE] [flags]

Runs one authoritative DNS server, UDP and TCP, answering from the configuration and STATE.

Example:
  detour dns --addr 127.0.0.1:5353 --data-dir /var/lib/detour-dns`,
	"edge": `usage: detour edge --name EDGE [--region R] [--resolver ADDR] [--nats URL] [--config FILE] [flags]

Runs one edge proxy, one of the configuration's edges.

Example:
  detour edge --name edge-west --region us-west --resolver 127.0.0.1:5353`,
	"controller": `usage: detour controller [--name N] [--nats URL] [--config FILE] [flags]

Runs the controller: edge liveness from heartbeats, one route table per edge, and the HTTP API
with the status page on --api-addr.

Example:
  detour controller --name controller-1 --api-addr 127.0.0.1:8088 --api-tokens /etc/detour/api-tokens`,
	"apply": `usage: detour apply FILE [--expect-version N] [-m WHY] [--replicas N] [--force] [--nats URL] [flags]

Validates FILE, creates the streams if needed and makes FILE the active configuration. FILE
byte for byte the active version's document stores nothing: "unchanged", exit 0; --force stores
it as a new version anyway (a controller reads a webhook's url_file again with one).

Example:
  detour apply detour.yaml --replicas 3 --nats nats://127.0.0.1:4222`,
	"plan": `usage: detour plan FILE [--nats URL]

Shows what applying FILE would change: the configuration field by field, and the answers the
DNS server would give now. Prints the active version for "detour apply --expect-version".

Example:
  detour plan detour.yaml`,
	"token": `usage: detour token create NAME --scope read|write [--file FILE]
       detour token revoke NAME [--file FILE]

create adds a bearer token for the controller's HTTP API to the tokens file (only its SHA-256
is stored) and prints the token once. read: every GET; write: also overrides and config apply.
revoke removes the token named NAME from the file. The running API (the controller's, detour
up's) takes either change within a second, without a restart.

Example:
  detour token create grafana --scope read --file detour-data/api-tokens
  detour token revoke grafana --file detour-data/api-tokens`,
	"config": `usage: detour config get [--version N] [--show-secrets] [--nats URL]
       detour config history [--nats URL]

Prints the active configuration (or a kept version) with who applied it and why, or every kept
version. A secret written inline (a TSIG key, a webhook's secret) is shown as "<redacted>", which
detour apply refuses; --show-secrets shows it (through the API, with a write token only).

Example:
  detour config history
  detour config get --version 3`,
	"check": `usage: detour check FILE

Validates FILE without running anything: prints every problem (exit 2) or a summary and any
warnings (exit 0). It refuses exactly what "detour up --config FILE" refuses.

Example:
  detour check detour.yaml`,
	"override": `usage: detour override set APP POOL [ENDPOINT] --action force_up|force_down|drain --reason TEXT
       detour override clear APP POOL [ENDPOINT] --reason TEXT
       detour override list

Records an operator's decision that wins over the probes, ends it, or lists those in force.

Example:
  detour override set shop us-west --action drain --reason "maintenance, ticket 42"
  detour override clear shop us-west --reason "maintenance done"`,
	"query": `usage: detour query NAME [TYPE] [--server ADDR] [--watch] [--every D]

Asks a DNS server for NAME (type A by default) and prints the answer on one line. With --watch
it keeps asking and prints a timestamped line each time the answer changes. A failed query is
reported on stderr; without --watch it exits 1.

Example:
  detour query shop.demo.test
  detour query --server 127.0.0.1:5353 --watch www.demo.test`,
	"events": `usage: detour events [--stream S] [--subject FILTER] [--since D] [--follow] [--json] [--show-secrets] [--nats URL]

Prints the stored events, oldest first, one line each (time, type, subject, summary),
without a terminal or a pager. --follow keeps printing new ones until Ctrl-C. With --json, a
configuration's secrets written inline are shown as "<redacted>" unless --show-secrets.

Example:
  detour events --since 10m
  detour events --stream STATE --subject 'detour.state.endpoint.shop.>' --follow`,
	"backend": `usage: detour backend [--name N] [--listen ADDR]

Serves a demo application instance: POST /-/fail makes it answer 503, POST /-/recover heals it.

Example:
  detour backend --name us-west --listen 127.0.0.11:8081`,
	"health": `usage: detour health --dns ADDR | --tcp ADDR | --http URL [--timeout 2s]

Exits 0 and prints "healthy" when the one thing named answers within the timeout, 1 otherwise:
the healthcheck of the FROM-scratch images, which have no shell, curl or dig.

Example:
  detour health --dns 172.30.0.53:53
  detour health --http http://127.0.0.1:9464/metrics`,
	"help": `usage: detour help [COMMAND]

Prints the usage of COMMAND, or the list of commands.

Example:
  detour help up`,
}

// errHelp is returned by a command asked for --help; Main prints fs's usage on stdout.
type errHelp struct{ fs *flag.FlagSet }

func (errHelp) Error() string { return "help requested" }
func (errHelp) Unwrap() error { return flag.ErrHelp }

// printHelp writes the usage of cmd, with the flags of fs when known.
func printHelp(w io.Writer, cmd string, fs *flag.FlagSet) {
	fmt.Fprintln(w, helpText[cmd])
	if fs == nil {
		return
	}
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	if b.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", b.String())
	}
}

// help prints the usage of the command named in args, or the general usage.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok || name == "help" {
		if name == "help" {
			printHelp(stdout, name, nil)
			return exitOK
		}
		fmt.Fprintf(stderr, "detour help: unknown command %q; the commands are listed by \"detour help\"\n", name)
		return exitUsage
	}
	// Every command parses its flags before anything else, so asking it for --help has no effect
	// but returning its flag set.
	var h errHelp
	if err := cmd(context.Background(), []string{"--help"}, io.Discard, io.Discard); !errors.As(err, &h) {
		printHelp(stdout, name, nil)
		return exitOK
	}
	printHelp(stdout, name, h.fs)
	return exitOK
}
