package cli

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/up"
)

// checkHostPort refuses anything but ip:port (or :port) with a port in 0-65535.
func checkHostPort(flagName, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return usageErr("%s: want ip:port such as 127.0.0.1:5353, got %q", flagName, v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return usageErr("%s: want a port in 0-65535, got %q", flagName, port)
	}
	if host != "" && net.ParseIP(host) == nil {
		return usageErr("%s: want an IP address before the port, got %q", flagName, host)
	}
	return nil
}

// checkNATSURL refuses what nats.Connect would only refuse after a timeout or with a vague error.
func checkNATSURL(v string) error {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "://") {
		v = "nats://" + v
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return fmt.Errorf("want a URL such as nats://127.0.0.1:4222, got %q", v)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("want a nats://, tls://, ws:// or wss:// URL, got %q", v)
	}
	return nil
}

// natsUser is the user name that the NATS URLs in urls (comma-separated) carry, the first one
// given, or "".
func natsUser(urls string) string {
	for _, v := range strings.Split(urls, ",") {
		v = strings.TrimSpace(v)
		if !strings.Contains(v, "://") {
			v = "nats://" + v
		}
		if u, err := url.Parse(v); err == nil && u.User != nil && u.User.Username() != "" {
			return u.User.Username()
		}
	}
	return ""
}

// checkToken refuses a value that cannot be a subject token (regions, names).
func checkToken(flagName, v string) error {
	if err := events.CheckToken(v); err != nil {
		return usageErr("%s: %v", flagName, err)
	}
	return nil
}

// checkReadable refuses a configuration file that cannot be read: a usage error, not a runtime
// failure.
func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return usageErr("--config: %v", err)
	}
	return f.Close()
}

// checkFlags validates the shared flags, the --config file and the command's own flags.
func (r *role) checkFlags() error {
	if err := r.common.check(); err != nil {
		return err
	}
	if err := checkToken("--name", r.name); err != nil {
		return err
	}
	if r.configPath != "" {
		if err := checkReadable(r.configPath); err != nil {
			return err
		}
	}
	if err := checkReplicas(r.replicas); err != nil {
		return err
	}
	if err := checkOptionalHostPort("--metrics-addr", r.metricsAddr); err != nil {
		return err
	}
	if r.check != nil {
		return r.check()
	}
	return nil
}

// checkOptionalHostPort is checkHostPort for a flag where "" turns the feature off.
func checkOptionalHostPort(flagName, v string) error {
	if v == "" {
		return nil
	}
	return checkHostPort(flagName, v)
}

func checkReplicas(n int) error {
	if n < 1 || n > 5 {
		return usageErr("--replicas: want 1 to 5 (JetStream's limit), got %d", n)
	}
	return nil
}

func checkEdgeFlags(region, resolver string) error {
	if region != "" {
		if err := checkToken("--region", region); err != nil {
			return err
		}
	}
	return checkHostPort("--resolver", resolver)
}

// checkUp validates the flags of `detour up`.
func checkUp(o up.Options) error {
	if err := checkHostPort("--dns-addr", o.DNSAddr); err != nil {
		return err
	}
	if o.DataDir == "" {
		return usageErr("--data-dir: must not be empty")
	}
	if err := checkOptionalHostPort("--metrics-addr", o.MetricsAddr); err != nil {
		return err
	}
	if err := checkOptionalHostPort("--api-addr", o.APIAddr); err != nil {
		return err
	}
	if o.NATSPort < -1 || o.NATSPort > 65535 {
		return usageErr("--nats-port: want -1 (any free port) or 0-65535, got %d", o.NATSPort)
	}
	for _, r := range o.Regions {
		if err := checkToken("--regions", r); err != nil {
			return err
		}
	}
	return nil
}

// credentialDirFlag is --credential-dir, repeatable: the directories the files a configuration
// names (headers_file, send_file, secret_file, url_file) may be in, as the operator of the
// process sets them, never CONFIG. Given, it replaces $DETOUR_CREDENTIAL_DIRS.
type credentialDirFlag struct {
	dirs []string
	set  bool
}

// registerCredentialDirs adds --credential-dir to fs, its default $DETOUR_CREDENTIAL_DIRS.
func registerCredentialDirs(fs *flag.FlagSet) *credentialDirFlag {
	c := &credentialDirFlag{dirs: config.SplitCredentialDirs(os.Getenv("DETOUR_CREDENTIAL_DIRS"))}
	fs.Var(c, "credential-dir", "read the files the configuration names (headers_file, send_file, secret_file, url_file) only inside this `directory`, symlinks followed; repeat for more ($DETOUR_CREDENTIAL_DIRS, separated by "+string(filepath.ListSeparator)+"; default: none, every such file refused)")
	return c
}

func (c *credentialDirFlag) String() string {
	if c == nil {
		return ""
	}
	return strings.Join(c.dirs, string(filepath.ListSeparator))
}

func (c *credentialDirFlag) Set(v string) error {
	if v == "" {
		return errors.New("want a directory")
	}
	if !c.set {
		c.dirs, c.set = nil, true
	}
	c.dirs = append(c.dirs, v)
	return nil
}

// ownSecret is where the process keeps a secret of its own: the flag that names the path (read
// once the flags are parsed), and what it keeps.
type ownSecret struct {
	flag string
	path *string
	what string
}

// open returns the directories, each checked to be one and to hold none of own: a configuration
// could name a file there (the nkey seed of `detour up`'s data directory, the API's tokens) and
// have a prober send it. A usage error names the one at fault.
func (c *credentialDirFlag) open(own ...ownSecret) (config.CredentialDirs, error) {
	d, err := config.NewCredentialDirs(c.dirs...)
	if err != nil {
		return config.CredentialDirs{}, usageErr("--credential-dir: %v", err)
	}
	for _, o := range own {
		if d.Holds(*o.path) {
			return config.CredentialDirs{}, usageErr("--credential-dir: %s %s lies in a credential directory (%s), where a configuration could name %s for a check to send or a webhook to sign with: give the files a configuration names a directory of their own", o.flag, *o.path, d, o.what)
		}
	}
	return d, nil
}

// given reports whether the flag named name was set on the command line.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
