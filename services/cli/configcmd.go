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
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/configfile"
	"github.com/detourdev/detour/services/plan"
)

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	var c common
	c.register(fs, true)
	api := apiFlag(fs)
	timeout := timeoutFlag(fs)
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
	if *api != "" {
		p := plan.Plan{}
		if err := callAPI(ctx, *timeout, *api, http.MethodPost, "/v1/config/plan", path, doc, &p); err != nil {
			return err
		}
		p.File = path
		p.Write(stdout)
		return nil
	}
	js, err := connectWithin(ctx, c.natsURL, "detour-plan")
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	defer js.Conn().Close() // flushes what is still to be sent
	p, err := plan.Make(ctx, js, path, doc, true)
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	p.Write(stdout)
	return nil
}

// runConfig shows applied configuration versions: `config get [--version N]`, `config history`.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		args = []string{"get", "--help"}
	}
	if len(args) == 0 || (args[0] != "get" && args[0] != "history") {
		return usageErr("want `config get [--version N]` or `config history`")
	}
	fs := flag.NewFlagSet("config "+args[0], flag.ContinueOnError)
	var c common
	var version uint64
	var showSecrets bool
	c.register(fs, true)
	api := apiFlag(fs)
	timeout := timeoutFlag(fs)
	if args[0] == "get" {
		fs.Uint64Var(&version, "version", 0, "the version to show (default: the active one)")
		fs.BoolVar(&showSecrets, "show-secrets", false, `show the secrets written inline in the document (default: each shown as "<redacted>", which detour apply refuses)`)
	}
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if err := c.check(); err != nil {
		return err
	}
	if err := checkTimeout(*timeout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if args[0] == "history" {
		var vs []config.Version
		if *api != "" {
			var h struct {
				Versions []config.Version `json:"versions"`
			}
			if err := callAPI(ctx, *timeout, *api, http.MethodGet, "/v1/config/history", "", nil, &h); err != nil {
				return err
			}
			vs = h.Versions
		} else {
			js, err := connectWithin(ctx, c.natsURL, "detour-config")
			if err != nil {
				return unanswered(ctx, *timeout, err)
			}
			defer js.Conn().Close() // flushes what is still to be sent
			if vs, err = config.History(ctx, js); err != nil {
				return unanswered(ctx, *timeout, err)
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tAPPLIED\tBY\tSHA256\tMESSAGE")
		for _, v := range vs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.12s\t%s\n", v.Number, v.Time.Format(time.RFC3339), v.By, v.SHA256, v.Message)
		}
		return tw.Flush()
	}
	var v config.Version
	if *api != "" {
		q := url.Values{}
		if version != 0 {
			q.Set("version", strconv.FormatUint(version, 10))
		}
		if showSecrets {
			q.Set("show_secrets", "true")
		}
		path := "/v1/config"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var st *apiStatus
		switch err := callAPI(ctx, *timeout, *api, http.MethodGet, path, "", nil, &v); {
		case errors.As(err, &st) && st.code == http.StatusNotFound:
			return errUsage{err} // no such version: exit 2, as over NATS (config.ErrNoVersion)
		case err != nil:
			return err
		}
		printVersion(v, showSecrets, stdout)
		return nil
	}
	js, err := connectWithin(ctx, c.natsURL, "detour-config")
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	defer js.Conn().Close() // flushes what is still to be sent
	if version == 0 {
		v, err = config.Active(ctx, js)
	} else {
		v, err = config.GetVersion(ctx, js, version)
	}
	if errors.Is(err, config.ErrNoVersion) {
		return usageErr("%w", err)
	}
	if err != nil {
		return unanswered(ctx, *timeout, err)
	}
	printVersion(v, showSecrets, stdout)
	return nil
}

// printVersion writes a version's document after two comment lines: number, when, who, why.
// Unless showSecrets, each secret written inline in it is shown as "<redacted>" (config.Redact),
// and a third line says so: terminal output ends up in tickets and chats.
func printVersion(v config.Version, showSecrets bool, stdout io.Writer) {
	fmt.Fprintf(stdout, "# version %s, applied %s by %s", strconv.FormatUint(v.Number, 10), v.Time.Format(time.RFC3339), v.By)
	if v.Message != "" {
		fmt.Fprintf(stdout, ": %q", v.Message)
	}
	fmt.Fprintf(stdout, "\n# sha256 %s\n", v.SHA256)
	doc := []byte(v.Document)
	if !showSecrets {
		var fields []string
		doc, fields = config.Redact(doc)
		// A second document is left out whole, and says so where it began.
		fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, config.SecondDocument+" ") })
		if len(fields) > 0 {
			fmt.Fprintf(stdout, "# %s shown as %q, which detour apply refuses: --show-secrets shows them\n", strings.Join(fields, ", "), config.Redacted)
		}
	}
	stdout.Write(doc)
}
