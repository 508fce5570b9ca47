package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// What an alert group can be told about.
const (
	// AlertTransition is every endpoint, pool and edge transition.
	AlertTransition = "transition"
	// AlertPoolDown is a pool going down.
	AlertPoolDown = "pool_down"
	// AlertFailover is a pool transition that changes what an app answers.
	AlertFailover = "failover"
	// AlertEdgeDown is an edge proxy going down.
	AlertEdgeDown = "edge_down"
	// AlertDrillResult is the result of a drill.
	AlertDrillResult = "drill_result"
)

// AlertKinds lists every value of alerts[].on.
var AlertKinds = []string{AlertTransition, AlertPoolDown, AlertFailover, AlertEdgeDown, AlertDrillResult}

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
)

// Alert is a group of webhooks and what they are told about, as Alibaba GTM's alert groups.
type Alert struct {
	// Name identifies the group in delivery events; letters, digits, '_' and '-'.
	Name string `yaml:"name"`
	// On lists what the group is told about: transition, pool_down, failover, edge_down,
	// drill_result. At least one.
	On []string `yaml:"on"`
	// Apps limits the group to these apps (edge events have none and always match). Default:
	// every app.
	Apps []string `yaml:"apps,omitempty"`
	// Webhooks receive every matching event. At least one.
	Webhooks []Webhook `yaml:"webhooks"`
	// RetryFor is how long a failed delivery is retried, with backoff, and how long after its
	// event one missed while no controller ran is still sent. Default 10m; a document written
	// with 0 is refused (configfile.Check), a stored version's 0 read as the default.
	RetryFor Duration `yaml:"retry_for,omitempty"`
}

// Webhook is one HTTP endpoint an alert is POSTed to.
type Webhook struct {
	// URL is where to POST: http or https, without user:password (use the secret). A token in
	// it (Slack's, Discord's, Teams' path; a query parameter such as token or sig) is stored in
	// CONFIG and shown redacted (secretFields), so prefer URLFile or URLEnv for such a URL.
	// Exactly one of the three is required.
	URL string `yaml:"url,omitempty"`
	// URLFile is a file holding the URL, read by the alert sender.
	URLFile string `yaml:"url_file,omitempty"`
	// URLEnv is an environment variable holding the URL, read by the alert sender.
	URLEnv string `yaml:"url_env,omitempty"`
	// Format is json (default: Detour's own document) or slack (an incoming-webhook message).
	Format string `yaml:"format,omitempty"`
	// Secret signs every delivery: header Detour-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret,
	// "UNIX.BODY")). Give it in a file or the environment rather than inline. Optional.
	Secret     string `yaml:"secret,omitempty"`
	SecretFile string `yaml:"secret_file,omitempty"`
	SecretEnv  string `yaml:"secret_env,omitempty"`
}

// Target returns the webhook's URL, from wherever the configuration says it is: a file only in
// one of dirs. A URL read
// from a file or the environment that is not http or https with a host, or that carries a user
// or password, is an error naming where it was read, never the URL.
func (w Webhook) Target(dirs CredentialDirs) (string, error) {
	s, err := readValue(dirs, "url", w.URL, w.URLFile, w.URLEnv)
	if err != nil {
		return "", fmt.Errorf("webhook %w", err)
	}
	if w.URL == "" && webhookURLProblem(s) != "" {
		if w.URLFile != "" {
			return "", fmt.Errorf("webhook url_file: %s, in %s", urlWant, w.URLFile)
		}
		return "", fmt.Errorf("webhook url_env: %s, in $%s", urlWant, w.URLEnv)
	}
	return s, nil
}

// urlWant is what a webhook's URL must be.
const urlWant = "want an http or https URL with a host, without a user or password"

// webhookURLProblem says what is wrong with a webhook's URL, without repeating it (it may be the
// webhook's token), or "".
func webhookURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "want an http or https URL with a host"
	case u.User != nil:
		return "must not carry a user or password: sign with secret_file or secret_env instead"
	}
	return ""
}

// Key returns the webhook's signing secret, or "" when it has none: a file only in one of dirs.
func (w Webhook) Key(dirs CredentialDirs) (string, error) {
	if w.Secret == "" && w.SecretFile == "" && w.SecretEnv == "" {
		return "", nil
	}
	s, err := ReadSecret(dirs, w.Secret, w.SecretFile, w.SecretEnv)
	if err != nil {
		return "", fmt.Errorf("webhook %w", err)
	}
	return s, nil
}

func (c *Config) applyAlertDefaults() {
	for i := range c.Alerts {
		a := &c.Alerts[i]
		if a.RetryFor == 0 {
			a.RetryFor = Duration(10 * time.Minute)
		}
		for j := range a.Webhooks {
			if a.Webhooks[j].Format == "" {
				a.Webhooks[j].Format = FormatJSON
			}
		}
	}
}

func (c *Config) validateAlerts(p *problems) {
	seen := map[string]bool{}
	for i, a := range c.Alerts {
		path := fmt.Sprintf("alerts[%d]", i)
		p.token(path+".name", a.Name)
		if seen[a.Name] {
			p.add(path+".name", "duplicate alert group %q", a.Name)
		}
		seen[a.Name] = true
		if len(a.On) == 0 {
			p.add(path+".on", "want at least one of transition, pool_down, failover, edge_down, drill_result")
		}
		for j, on := range a.On {
			if !slices.Contains(AlertKinds, on) {
				p.add(fmt.Sprintf("%s.on[%d]", path, j), "want transition, pool_down, failover, edge_down or drill_result, got %q", on)
			}
		}
		for j, app := range a.Apps {
			if c.App(app) == nil {
				p.add(fmt.Sprintf("%s.apps[%d]", path, j), "no app %q in the configuration", app)
			}
		}
		if len(a.Webhooks) == 0 {
			p.add(path+".webhooks", "want at least one webhook")
		}
		for j, w := range a.Webhooks {
			wp := fmt.Sprintf("%s.webhooks[%d]", path, j)
			switch given(w.URL, w.URLFile, w.URLEnv) {
			case 0:
				p.add(wp, "want one of url, url_file or url_env")
			case 1:
				switch {
				case w.URLEnv != "" && !envNameRE.MatchString(w.URLEnv):
					// Not repeated: what is not a variable's name may be the URL itself.
					p.add(wp+".url_env", envNameWant)
				case w.URL == "" || strings.Contains(w.URL, Redacted):
					// Read where the alert sender runs (Target); the marker is refused by
					// redactedProblems.
				case webhookURLProblem(w.URL) != "":
					p.add(wp+".url", "%s", webhookURLProblem(w.URL))
				}
			default:
				p.add(wp, "want only one of url, url_file or url_env")
			}
			if w.Format != FormatJSON && w.Format != FormatSlack {
				p.add(wp+".format", "want json or slack, got %q", w.Format)
			}
			if w.Secret != "" || w.SecretFile != "" || w.SecretEnv != "" {
				validateSecret(p, wp, w.Secret, w.SecretFile, w.SecretEnv)
			}
		}
		if a.RetryFor.D() < 0 {
			p.add(path+".retry_for", "must not be negative")
		}
	}
}
