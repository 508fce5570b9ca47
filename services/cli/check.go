package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/configfile"
)

func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	credentialDirs := registerCredentialDirs(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want exactly one configuration file")
	}
	dirs, err := credentialDirs.open()
	if err != nil {
		return err
	}
	path := fs.Arg(0)
	doc, err := os.ReadFile(path)
	if err != nil {
		return usageErr("read configuration: %w", err)
	}
	c, err := configfile.Check(path, doc)
	if err != nil {
		return err
	}
	if err := configfile.CheckSecrets(path, doc, c, dirs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid: %s, %s, %s\n", path, count(len(c.Zones), "zone"), count(len(c.Apps), "app"), count(len(c.Edges), "edge"))
	for _, w := range configfile.Warnings(path, doc, c) {
		fmt.Fprintln(stderr, w)
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
	return configfile.Check(path, doc)
}

// count writes n and noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
