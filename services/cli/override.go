package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/services/override"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const overrideUsage = "want `override set APP POOL [ENDPOINT] --action force_up|force_down|drain --reason TEXT`, " +
	"`override clear APP POOL [ENDPOINT] --reason TEXT` or `override list`"

func runOverride(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr(overrideUsage)
	}
	verb := args[0]
	if verb == "-h" || verb == "-help" || verb == "--help" {
		verb = "set"
		args = []string{verb, "--help"}
	}
	fs := flag.NewFlagSet("override "+verb, flag.ContinueOnError)
	var c common
	var o events.Override
	c.register(fs, true)
	api := apiFlag(fs)
	timeout := timeoutFlag(fs)
	switch verb {
	case "set":
		fs.StringVar(&o.Action, "action", "", "force_up, force_down or drain (required)")
		fs.StringVar(&o.Reason, "reason", "", "why, for the history (required)")
	case "clear":
		fs.StringVar(&o.Reason, "reason", "", "why, for the history (required)")
	case "list":
	default:
		return usageErr(overrideUsage)
	}
	if err := parseInterspersed(fs, args[1:], stderr); err != nil {
		return err
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if verb == "list" {
		if fs.NArg() != 0 {
			return usageErr("override list takes no arguments")
		}
		if *api != "" {
			var list struct {
				Overrides []override.InForce `json:"overrides"`
			}
			if err := callAPI(ctx, *timeout, *api, http.MethodGet, "/v1/overrides", "", nil, &list); err != nil {
				return err
			}
			return printOverrides(list.Overrides, stdout)
		}
		return unanswered(ctx, *timeout, listOverrides(ctx, c.natsURL, stdout))
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		return usageErr("want APP POOL [ENDPOINT]")
	}
	o.App, o.Pool, o.Endpoint, o.By = fs.Arg(0), fs.Arg(1), fs.Arg(2), operator()
	if err := override.Check(o, verb == "clear"); err != nil {
		return errUsage{err}
	}
	if *api != "" {
		method := http.MethodPost
		if verb == "clear" {
			method = http.MethodDelete
		}
		body, err := json.Marshal(map[string]string{"app": o.App, "pool": o.Pool, "endpoint": o.Endpoint, "action": o.Action, "reason": o.Reason})
		if err != nil {
			return err
		}
		if err := callAPI(ctx, *timeout, *api, method, "/v1/overrides", "", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "override %s on %s\n", verb, events.OverrideSubject(o.App, o.Pool, o.Endpoint))
		return nil
	}
	js, err := connectWithin(ctx, c.natsURL, "detour-override")
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	defer js.Conn().Close() // flushes what is still to be sent
	if verb == "set" {
		err = setOverride(ctx, c, js, o)
	} else {
		// One in force on an endpoint or pool the configuration no longer has can be cleared.
		err = override.Clear(ctx, js, o)
	}
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	fmt.Fprintf(stdout, "override %s on %s\n", verb, events.OverrideSubject(o.App, o.Pool, o.Endpoint))
	return nil
}

// setOverride sets o once the configuration is found to have what it names.
func setOverride(ctx context.Context, c common, js jetstream.JetStream, o events.Override) error {
	cfg, err := (&role{common: c}).loadConfig(ctx, js, zerolog.Nop())
	if err != nil {
		return err
	}
	if err := override.Validate(cfg, o); err != nil {
		return errUsage{err}
	}
	return override.Set(ctx, js, o)
}

func listOverrides(ctx context.Context, url string, stdout io.Writer) error {
	js, err := connectWithin(ctx, url, "detour-override")
	if err != nil {
		return err
	}
	defer js.Conn().Close() // flushes what is still to be sent
	list, err := override.List(ctx, js)
	if err != nil {
		return err
	}
	return printOverrides(list, stdout)
}

func printOverrides(list []override.InForce, stdout io.Writer) error {
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no override in force")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tPOOL\tENDPOINT\tACTION\tSINCE\tBY\tREASON")
	for _, o := range list {
		ep := o.Endpoint
		if ep == "" {
			ep = "(whole pool)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.App, o.Pool, ep, o.Action, o.Since.Format(time.RFC3339), o.By, o.Reason)
	}
	return w.Flush()
}
