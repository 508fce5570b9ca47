package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/detourdev/detour/services/drill"
	"github.com/rs/zerolog"
)

func init() {
	helpText["drill"] = `usage: detour drill plan FILE [--nats URL] [--config FILE] [--format text|json]
       detour drill run FILE --dns ADDR[,ADDR] [--hold D] [--format text|json|html] [--nats URL]
       detour drill rollback ID [--nats URL]

A disaster-recovery drill: plan previews every step's answers and routes and refuses what a
safety rule forbids; run simulates the failures (real backends are untouched), measures each
switch against its rto and prints the scorecard; rollback ends a drill. A drill rolls back by
itself after max_duration or when its runner dies (any controller replica does it).

Example:
  detour drill plan drill.yaml
  detour drill run drill.yaml --dns 127.0.0.1:5353 --format html > scorecard.html
  detour drill rollback lose-west-0193d2c4a1b27`
}

const drillUsage = "want `drill plan FILE`, `drill run FILE --dns ADDR` or `drill rollback ID`"

// runDrill is `detour drill plan|run|rollback`.
func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr(drillUsage)
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		args = []string{"run", "--help"}
	}
	verb := args[0]
	fs := flag.NewFlagSet("drill "+verb, flag.ContinueOnError)
	var c common
	c.register(fs, true)
	timeout := timeoutFlag(fs)
	var format, dnsAddrs string
	var o drill.Options
	switch verb {
	case "plan":
		fs.StringVar(&format, "format", "text", "text or json")
	case "run":
		fs.StringVar(&format, "format", "text", "scorecard format: text, json or html")
		fs.StringVar(&dnsAddrs, "dns", "127.0.0.1:5353", "the DNS servers whose answers are measured, comma-separated")
		fs.DurationVar(&o.Hold, "hold", 0, "how long the last step stays in force before the rollback")
	case "rollback":
	default:
		return usageErr(drillUsage)
	}
	if err := parseInterspersed(fs, args[1:], stderr); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr(drillUsage)
	}
	switch {
	case verb == "plan" && format != "text" && format != "json":
		return usageErr("--format: want text or json, got %q", format)
	case verb == "run" && format != "text" && format != "json" && format != "html":
		return usageErr("--format: want text, json or html, got %q", format)
	}
	// plan and rollback wait for the cluster up to --timeout in all; a run lasts its steps: the
	// connection and the read of the active configuration are bounded so, and each of the run's
	// requests after (drill.Options.Wait).
	once, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	js, err := connectWithin(once, c.natsURL, "detour-drill")
	if err != nil {
		return unanswered(once, *timeout, err)
	}
	defer js.Conn().Close() // flushes what is still to be sent
	if verb == "rollback" {
		if err := drill.Rollback(once, js, fs.Arg(0), operator(), nil); err != nil {
			return unanswered(once, *timeout, err)
		}
		fmt.Fprintf(stdout, "drill %s rolled back\n", fs.Arg(0))
		return nil
	}
	o.JS = js
	if o.File, err = drill.Load(fs.Arg(0)); err != nil {
		return errUsage{err}
	}
	if o.Config, err = (&role{common: c}).loadConfig(once, js, zerolog.Nop()); err != nil {
		return unanswered(once, *timeout, err)
	}
	if verb == "plan" {
		return unanswered(once, *timeout, planDrill(once, o, format, stdout))
	}
	if o.Log, err = c.logger(stderr); err != nil {
		return err
	}
	o.DNS, o.By, o.Wait = strings.Split(dnsAddrs, ","), operator(), *timeout
	sc, err := drill.Run(ctx, o)
	if errors.Is(err, drill.ErrRefused) {
		return errUsage{err}
	}
	if err != nil {
		return err
	}
	switch format {
	case "json":
		err = sc.WriteJSON(stdout)
	case "html":
		err = sc.WriteHTML(stdout)
	default:
		err = sc.WriteText(stdout)
	}
	if err == nil && !sc.Pass {
		return errors.New("the drill failed: see the scorecard")
	}
	return err
}

func planDrill(ctx context.Context, o drill.Options, format string, stdout io.Writer) error {
	p, err := drill.PlanFor(ctx, o.JS, o.Config, o.File)
	if err != nil {
		return err
	}
	if format == "json" {
		err = json.NewEncoder(stdout).Encode(p)
	} else {
		err = p.WriteText(stdout)
	}
	if err == nil && len(p.Refused) > 0 {
		return usageErr("%v:\n%s", drill.ErrRefused, strings.Join(p.Refused, "\n"))
	}
	return err
}
