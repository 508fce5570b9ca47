package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/replay"
)

func init() {
	helpText["replay"] = `usage: detour replay [--from T] [--to T] [--app A] [--endpoint E] [--region R] [--format text|json|html] [--what-if S] [--timeout D] [--nats URL]

Reads PROBES, STATE, DNS, ROUTES and DRILLS back and prints one timeline of an incident: first
failed probes, transitions with their phases (first probe → threshold → appended → answer
changed → edges switched), answer changes, route tables, overrides and drill steps. --what-if
re-decides the recorded results with other thresholds and shows the transitions side by side;
the thresholds not given are those of each configuration version when it was active (with
--config, that file's for the whole window). --timeout bounds each wait for the cluster's answer
(a request's, or the next message of a read), not the whole replay, which reads for as long as
messages come.

Example:
  detour replay --from 15m --app shop
  detour replay --from 2026-11-30T19:00:00Z --format html > incident.html
  detour replay --from 1h --what-if 'fall=5,rise=3,quorum=0.67,hold_down=30s,stale_after=10s'`
}

// runReplay is `detour replay`: the timeline of an incident read back from the streams.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var c common
	var from, to, whatIf string
	var o replay.Options
	c.register(fs, true)
	fs.StringVar(&c.natsURL, "server", c.natsURL, "NATS server URL(s), as --nats")
	fs.StringVar(&from, "from", "1h", "start: an RFC 3339 time, or a duration ago such as 15m")
	fs.StringVar(&to, "to", "", "end: an RFC 3339 time, or a duration ago (default: now)")
	fs.StringVar(&o.Filter.App, "app", "", "only this app")
	fs.StringVar(&o.Filter.Endpoint, "endpoint", "", "only this endpoint (its name, e.g. 127-0-0-11_8081)")
	fs.StringVar(&o.Filter.Region, "region", "", "only the probe results of this probing region")
	fs.StringVar(&o.Format, "format", "text", "text, json (one object per line) or html (one self-contained page)")
	fs.StringVar(&whatIf, "what-if", "", "re-decide with other thresholds, e.g. 'fall=5,rise=3,quorum=0.67,hold_down=30s,stale_after=10s'")
	fs.DurationVar(&o.Wait, "timeout", replay.DefaultWait, "how long the replay waits for each answer of the NATS cluster (a request's, or a read's next message), e.g. 5s or 2m")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := c.check(); err != nil {
		return err
	}
	if err := checkTimeout(o.Wait); err != nil {
		return err
	}
	if !slices.Contains(replay.Formats, o.Format) {
		return usageErr("--format: want text, json or html, got %q", o.Format)
	}
	now := clock()
	var err error
	if o.Filter.From, err = parseWhen(from, now); err != nil {
		return usageErr("--from: %v", err)
	}
	if o.Filter.To, err = parseWhen(to, now); err != nil {
		return usageErr("--to: %v", err)
	}
	if !o.Filter.To.IsZero() && o.Filter.To.Before(o.Filter.From) {
		return usageErr("--to %s is before --from %s", to, from)
	}
	if whatIf != "" {
		s, err := replay.ParseSettings(whatIf)
		if err != nil {
			return usageErr("--what-if: %v", err)
		}
		o.WhatIf = &s
	}
	js, err := connect(c.natsURL, "detour-replay")
	if err != nil {
		return err
	}
	defer js.Conn().Close() // flushes what is still to be sent
	if c.configPath != "" {
		o.Config, err = config.Load(c.configPath)
	} else {
		// A what-if follows the versions as the deciders did; the active one sizes the warm-up.
		o.Versions = true
		lctx, cancel := context.WithTimeout(ctx, o.Wait)
		o.Config, err = config.Latest(lctx, js)
		err = unanswered(lctx, o.Wait, err)
		cancel()
		if err != nil && o.WhatIf == nil {
			o.Config, err = nil, nil // a timeline needs no configuration
		}
	}
	if err != nil {
		return err
	}
	o.Warn = func(s string) { fmt.Fprintf(stderr, "detour replay: warning: %s\n", s) }
	err = replay.Run(ctx, js, o, stdout)
	var late *replay.LateError
	if errors.As(err, &late) {
		return usageErr("--from %s is in the future: the history ends at %s, the servers' time", from, late.End.UTC().Format(time.RFC3339Nano))
	}
	return err
}

// clock is this machine's time, which durations ago count back from; the servers' decides
// whether a --from is in the future.
var clock = time.Now

// parseWhen reads an RFC 3339 time, or a duration before now ("15m"); "" is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
		if d < 0 {
			return time.Time{}, usageErr("want a duration ago, got the negative %s", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if _, local := time.Parse("2006-01-02T15:04:05.999999999", s); err != nil && local == nil {
		return time.Time{}, usageErr("%q has no time zone: add Z for UTC or an offset such as +01:00", s)
	}
	if err != nil {
		return time.Time{}, usageErr("want an RFC 3339 time or a duration ago such as 15m, got %q", s)
	}
	return t, nil
}
