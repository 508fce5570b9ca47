package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/detourdev/detour/dnsupdater/zone"
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
	path := fs.Arg(0)
	doc, err := os.ReadFile(path)
	if err != nil {
		return usageErr("read configuration: %w", err)
	}
	c, err := parseDoc(path, doc)
	if err != nil {
		return err
	}
	if err := readSecrets(path, doc, c); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid: %s, %s, %s\n", path, count(len(c.Zones), "zone"), count(len(c.Apps), "app"), count(len(c.Edges), "edge"))
	w := config.Locate(path, doc, c.Warnings())
	for i, p := range w.Problems {
		fmt.Fprintf(stderr, "%s:%d: warning: %s\n", path, w.Lines[i], p)
	}
	return nil
}

// loadFile reads and validates a configuration file as every command that runs one does: an
// unreadable file is a usage error, and the zones must compile as the DNS server compiles them.
func loadFile(path string) (*config.Config, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("read configuration: %w", err)
	}
	return parseDoc(path, doc)
}

// parseDoc validates a configuration document completely: what config.Parse checks and what the
// DNS server refuses when it compiles the zones.
func parseDoc(name string, doc []byte) (*config.Config, error) {
	c, err := config.Parse(name, doc)
	if err != nil {
		return nil, err
	}
	if _, err := zone.Compile(c); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, config.Locate(name, doc, ce.Problems)
		}
		return nil, err
	}
	return c, nil
}

// readSecrets reads every secret the configuration names in a file or a variable (TSIG keys,
// webhook keys), as detour up and the roles that use them do when they start, and reports
// those that cannot be read as configuration problems.
func readSecrets(name string, doc []byte, c *config.Config) error {
	var problems []string
	for i, z := range c.Zones {
		if z.Push != nil {
			if _, err := z.Push.TSIG.Key(); err != nil {
				problems = append(problems, fmt.Sprintf("zones[%d].push.%v", i, err))
			}
		}
	}
	for i := range c.Alerts {
		for j, w := range c.Alerts[i].Webhooks {
			if _, err := w.Key(); err != nil {
				problems = append(problems, fmt.Sprintf("alerts[%d].webhooks[%d]: %v", i, j, err))
			}
		}
	}
	if len(problems) > 0 {
		return config.Locate(name, doc, problems)
	}
	return nil
}

// count writes n and noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
