// Package configfile checks a configuration document as every command that runs one does:
// detour check, apply, config plan, up at its start and each time it reloads its --config
// file. The problems come located, each with the file and line of its path.
package configfile

import (
	"errors"
	"fmt"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/config"
)

// Check validates a configuration document completely: what config.Parse checks and what the
// DNS server refuses when it compiles the zones. A refusal is a *config.Error with the line of
// each problem in doc.
func Check(name string, doc []byte) (*config.Config, error) {
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
		for j, w := range c.Alerts[i].Webhooks {
			if _, err := w.Target(dirs); err != nil {
				problems = append(problems, fmt.Sprintf("alerts[%d].webhooks[%d]: %v", i, j, err))
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
