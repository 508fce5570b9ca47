package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/detourdev/detour/services/api"
)

// runToken makes an API token, `token create NAME --scope read|write --file FILE`, or removes
// one, `token revoke NAME --file FILE`. The running API takes either change within a second.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		args = []string{"create", "--help"}
	}
	if len(args) == 0 || args[0] != "create" && args[0] != "revoke" {
		return usageErr("want `token create NAME --scope read|write [--file FILE]` or `token revoke NAME [--file FILE]`")
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	var scope, file string
	if args[0] == "create" {
		fs.StringVar(&scope, "scope", api.ScopeRead, "read (GET) or write (also overrides and config apply)")
	}
	fs.StringVar(&file, "file", "detour-api-tokens", "the tokens file the API reads (detour up: DATA-DIR/api-tokens)")
	if err := parseInterspersed(fs, args[1:], stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("want exactly one token name")
	}
	if args[0] == "revoke" {
		if err := api.RevokeToken(file, fs.Arg(0)); err != nil {
			return usageErr("%w", err)
		}
		fmt.Fprintf(stdout, "revoked token %q in %s: the API refuses it within a second, without a restart\n", fs.Arg(0), file)
		return nil
	}
	secret, err := api.AddToken(file, fs.Arg(0), scope)
	if err != nil {
		return usageErr("%w", err)
	}
	fmt.Fprintf(stdout, "added %s token %q to %s (the API takes it within a second, without a restart); it is shown only now:\n%s\n", scope, fs.Arg(0), file, secret)
	return nil
}
