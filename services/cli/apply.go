package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/configfile"
)

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	var c common
	var replicas int
	var o config.ApplyOptions
	c.register(fs, true)
	api := apiFlag(fs)
	timeout := timeoutFlag(fs)
	fs.IntVar(&replicas, "replicas", envInt("DETOUR_REPLICAS", 1), "replicas of each stream and bucket; existing ones are raised to it, never lowered ($DETOUR_REPLICAS)")
	fs.StringVar(&o.Message, "m", "", "why: kept with the version in `detour config history`")
	fs.Func("expect-version", "refuse unless version `N` is the active one (0: none yet), as `detour plan` printed", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("want a version number")
		}
		o.Expect = &n
		return nil
	})
	fs.BoolVar(&o.Force, "force", false, "store FILE as a new version even when it is the active version's document (a controller reads a webhook's url_file again with a new version)")
	if err := parseInterspersed(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want exactly one configuration file")
	}
	path := fs.Arg(0)
	if err := c.check(); err != nil {
		return err
	}
	if err := checkReplicas(replicas); err != nil {
		return err
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	doc, err := os.ReadFile(path)
	if err != nil {
		return usageErr("read configuration: %w", err)
	}
	parsed, err := configfile.Check(path, doc)
	if err != nil {
		return err
	}
	for _, w := range configfile.Warnings(path, doc, parsed) {
		fmt.Fprintln(stderr, w)
	}
	for _, w := range parsed.SecretWarnings() {
		fmt.Fprintf(stderr, "detour apply: warning: %s\n", w)
	}
	if *api != "" && given(fs, "replicas") {
		return usageErr("--replicas: the API does not update the streams (its NATS user may not): run detour apply --nats as the operator to raise their replicas")
	}
	if *api != "" {
		q := url.Values{}
		if o.Message != "" {
			q.Set("message", o.Message)
		}
		if o.Expect != nil {
			q.Set("expect_version", strconv.FormatUint(*o.Expect, 10))
		}
		if o.Force {
			q.Set("force", "true")
		}
		var v config.Version
		if err := callAPI(ctx, *timeout, *api, http.MethodPost, "/v1/config/apply?"+q.Encode(), path, doc, &v); err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				return fmt.Errorf("%w; the version may have been stored: see `detour config history`, or apply %s again: it stores nothing if the version is there", err, path)
			}
			return err
		}
		if v.Unchanged {
			printUnchanged(stdout, v)
		} else {
			fmt.Fprintf(stdout, "applied %s as version %d by %s: %s, %s, %s\n", path, v.Number, v.By,
				count(len(parsed.Zones), "zone"), count(len(parsed.Apps), "app"), count(len(parsed.Edges), "edge"))
		}
		// The controller's NATS user may not update streams: their bounds are the operator's.
		if parsed.Streams.Probes.Bounded() {
			fmt.Fprintf(stderr, "detour apply: warning: streams.probes is not applied through the API: %s keeps its bounds (run detour apply --nats as the operator to update them)\n", events.StreamProbes)
		} else if !v.Unchanged {
			fmt.Fprintf(stderr, "detour apply: the streams are not updated through the API: %s keeps the bounds it has, not the ones for this file's %.0f results/s, and every stream its replicas (run detour apply --nats as the operator to update them)\n",
				events.StreamProbes, parsed.ProbeRate())
		}
		return nil
	}
	js, err := connectWithin(ctx, c.natsURL, "detour-apply")
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	defer js.Conn().Close() // flushes what is still to be sent
	// A refused apply changes nothing: a stale --expect-version, and a document larger than NATS
	// takes, are refused before the streams are bounded by this document (streams.probes,
	// --replicas), and bounds JetStream refuses before the document is stored.
	o.By = operator()
	if err := config.Fits(js.Conn(), path, doc, o); err != nil {
		return err
	}
	so := parsed.StreamOptions(replicas)
	if _, err := events.ProvisionStreams(ctx, js, so); err != nil {
		return unanswered(ctx, *timeout, err)
	}
	// The active version's document applied again stores nothing, whatever --expect-version
	// says: a retry of an apply whose answer was lost finds its version stored. The active
	// version, read from CONFIG's leader, tells a stale --expect-version too; CheckExpect reads
	// it again only to name it.
	active, same, err := config.Unchanged(ctx, js, doc)
	if err != nil {
		return unanswered(ctx, *timeout, fmt.Errorf("apply %s: nothing applied: %w", path, err))
	}
	same = same && !o.Force
	if o.Expect != nil && !same && active.Number != *o.Expect {
		if err := config.CheckExpect(ctx, js, path, *o.Expect); err != nil {
			return unanswered(ctx, *timeout, err)
		}
	}
	if err := events.EnsureStreams(ctx, js, so); err != nil {
		return unanswered(ctx, *timeout, fmt.Errorf("apply %s: nothing applied: %w", path, err))
	}
	v, cfg := active, parsed
	if !same {
		cfg, v, err = config.Apply(ctx, js, path, doc, o)
	}
	if errors.Is(err, config.ErrMaybeStored) {
		return fmt.Errorf("%w; see `detour config history`, or apply %s again: it stores nothing if the version is there", unanswered(ctx, *timeout, err), path)
	}
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	if b, err := events.ProbeBounds(ctx, js, parsed.ProbeRate()); err == nil {
		fmt.Fprintf(stdout, "%s keeps probe results for %s, within %s (%.0f results/s fill it in %s)\n", events.StreamProbes,
			b.MaxAge, config.ByteSize(b.MaxBytes), b.Rate, b.Fill.Round(time.Second))
		if b.Short() {
			fmt.Fprintf(stderr, "detour apply: warning: %s fills in %s, before its max_age %s: results are kept for %s (set streams.probes.max_bytes or max_age)\n",
				events.StreamProbes, b.Fill.Round(time.Second), b.MaxAge, b.Fill.Round(time.Second))
		}
	}
	if v.Unchanged {
		printUnchanged(stdout, v)
		return nil
	}
	fmt.Fprintf(stdout, "applied %s as version %d: %s, %s, %s (restart the roles that run with --config to pick up a file)\n",
		path, v.Number, count(len(cfg.Zones), "zone"), count(len(cfg.Apps), "app"), count(len(cfg.Edges), "edge"))
	return nil
}

// operator names who runs the command, for the history: user@host.
func operator() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + hostname()
}

// parseInterspersed parses flags that may come before, between or after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	var positional []string
	for {
		if err := parse(fs, args, stderr); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// printUnchanged says that the document applied is active version v's already: nothing stored.
func printUnchanged(stdout io.Writer, v config.Version) {
	fmt.Fprintf(stdout, "unchanged: version %d is already this document (applied %s by %s); nothing stored (--force stores it again)\n", v.Number, v.Time.Format(time.RFC3339), v.By)
}
