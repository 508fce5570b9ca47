// Package configfile checks a configuration document as every command that runs one does:
// detour check, apply, config plan, up at its start and each time it reloads its --config
// file. The problems come located, each with the file and line of its path.
package configfile

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
	"go.yaml.in/yaml/v3"
)

// Check validates a configuration document completely: what config.Parse checks and what the
// DNS server refuses when it compiles the zones. A refusal is a *config.Error with the line of
// each problem in doc.
//
// It also refuses what a stored version may hold, read by the roles as before, but a document
// written now must not (written): a version stored by an earlier Detour is not refused by the
// roles that start after an upgrade.
func Check(name string, doc []byte) (*config.Config, error) {
	more := written(doc)
	c, err := config.Parse(name, doc)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) && len(more) > 0 {
			e := config.Locate(name, doc, more)
			ce.Problems, ce.Lines = append(ce.Problems, e.Problems...), append(ce.Lines, e.Lines...)
		}
		return nil, err
	}
	if _, err := zone.Compile(c); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, config.Locate(name, doc, append(ce.Problems, more...))
		}
		return nil, err
	}
	if len(more) > 0 {
		return nil, config.Locate(name, doc, more)
	}
	return c, nil
}

// written lists the problems of doc that config.Parse takes from a stored version:
//   - a retry_for of 0, which config reads as left out (10m), where its writer meant no retries;
//   - a webhook listed twice in one group (the same url, url_file or url_env): their deliveries
//     of an alert share one Detour-Delivery id (it names the group and the URL), so the
//     controllers, which claim each attempt by it, send one, and a receiver keeps one.
//
// It reads the fields it needs alone, leniently: config.Parse reports what else is wrong.
func written(doc []byte) []string {
	var d struct {
		Alerts []struct {
			RetryFor string `yaml:"retry_for"`
			Webhooks []struct {
				URL     string `yaml:"url"`
				URLFile string `yaml:"url_file"`
				URLEnv  string `yaml:"url_env"`
			} `yaml:"webhooks"`
		} `yaml:"alerts"`
	}
	_ = yaml.Unmarshal(doc, &d) // a document that does not decode is config.Parse's to refuse
	var out []string
	for i, a := range d.Alerts {
		if v, err := time.ParseDuration(a.RetryFor); err == nil && v == 0 {
			out = append(out, fmt.Sprintf("alerts[%d].retry_for: must be positive, got %s: leave it out for the default, 10m; "+
				"a delivery is retried, and sent after a controller's restart, within retry_for", i, a.RetryFor))
		}
		seen := map[[2]string]int{}
		for j, w := range a.Webhooks {
			var key [2]string
			switch {
			case w.URL != "" && !strings.Contains(w.URL, config.Redacted):
				key = [2]string{"url", w.URL}
			case w.URLFile != "":
				key = [2]string{"url_file", w.URLFile}
			case w.URLEnv != "":
				key = [2]string{"url_env", w.URLEnv}
			default:
				continue
			}
			if first, ok := seen[key]; ok {
				out = append(out, fmt.Sprintf("alerts[%d].webhooks[%d].%s: the same webhook as alerts[%d].webhooks[%d]: "+
					"their deliveries of an alert share one Detour-Delivery id, and only one is sent; list it once", i, j, key[0], i, first))
				continue
			}
			seen[key] = j
		}
	}
	return out
}

// Warnings lists what c says that is valid but cannot work as meant (config.Config.Warnings), as
// detour check prints it: FILE:LINE: warning: path: what is wrong, without the line where it is
// not known. Every command that takes a document warns with these lines.
func Warnings(name string, doc []byte, c *config.Config) []string {
	w := config.Locate(name, doc, c.Warnings())
	out := make([]string, len(w.Problems))
	for i, p := range w.Problems {
		if w.Lines[i] > 0 {
			out[i] = fmt.Sprintf("%s:%d: warning: %s", name, w.Lines[i], p)
		} else {
			out[i] = fmt.Sprintf("%s: warning: %s", name, p)
		}
	}
	return out
}

// CheckSecrets reads every secret c names in a file (only in one of dirs) or a variable (TSIG
// keys, webhook URLs and keys), as detour up and the roles that use them do when they start,
// and reports those that cannot be read as a *config.Error located in doc.
func CheckSecrets(name string, doc []byte, c *config.Config, dirs config.CredentialDirs) error {
	var problems []string
	for i, z := range c.Zones {
		if z.TransferTSIG != nil {
			if _, err := z.TransferTSIG.Key(dirs); err != nil {
				problems = append(problems, fmt.Sprintf("zones[%d].transfer_%v", i, err))
			}
		}
		if z.Push != nil {
			if _, err := z.Push.TSIG.Key(dirs); err != nil {
				problems = append(problems, fmt.Sprintf("zones[%d].push.%v", i, err))
			}
		}
	}
	for i := range c.Alerts {
		seen := map[string]int{} // the webhooks' URLs as read, written apart (see written)
		for j, w := range c.Alerts[i].Webhooks {
			url, err := w.Target(dirs)
			if err != nil {
				problems = append(problems, fmt.Sprintf("alerts[%d].webhooks[%d]: %v", i, j, err))
			}
			if first, ok := seen[url]; ok && err == nil {
				if other := c.Alerts[i].Webhooks[first]; other.URL != w.URL || other.URLFile != w.URLFile || other.URLEnv != w.URLEnv {
					problems = append(problems, fmt.Sprintf("alerts[%d].webhooks[%d]: the same webhook as alerts[%d].webhooks[%d], once read: "+
						"their deliveries of an alert share one Detour-Delivery id, and only one is sent; list it once", i, j, i, first))
				}
			} else if err == nil {
				seen[url] = j
			}
			if _, err := w.Key(dirs); err != nil {
				problems = append(problems, fmt.Sprintf("alerts[%d].webhooks[%d]: %v", i, j, err))
			}
		}
	}
	if len(problems) > 0 {
		return config.Locate(name, doc, problems)
	}
	return nil
}
