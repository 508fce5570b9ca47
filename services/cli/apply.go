package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
)

func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want exactly one configuration file")
	}
	c, err := config.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid: %d zones, %d apps, %d edges\n", fs.Arg(0), len(c.Zones), len(c.Apps), len(c.Edges))
	return nil
}

func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	var c common
	var replicas int
	c.register(fs, true)
	fs.IntVar(&replicas, "replicas", 1, "replicas of each stream if apply creates it")
	if err := parseInterspersed(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want exactly one configuration file")
	}
	path := fs.Arg(0)
	doc, err := os.ReadFile(path)
	if err != nil {
		return usageErr("read configuration: %w", err)
	}
	if _, err := config.Parse(path, doc); err != nil {
		return err
	}
	js, err := connect(c.natsURL, "detour-apply")
	if err != nil {
		return err
	}
	if err := events.EnsureStreams(ctx, js, events.StreamOptions{Replicas: replicas}); err != nil {
		return err
	}
	cfg, err := config.Publish(ctx, js, path, doc, operator())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied %s: %d zones, %d apps, %d edges (restart the roles that run with --config to pick up a file)\n",
		path, len(cfg.Zones), len(cfg.Apps), len(cfg.Edges))
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
