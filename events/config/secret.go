package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateSecret checks that a secret is given exactly one way (inline, secret_file or
// secret_env) and reports whether it is.
func validateSecret(p *problems, path, inline, file, env string) bool {
	n := 0
	for _, s := range []string{inline, file, env} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		p.add(path, "want one of secret_file, secret_env or secret")
	case n > 1:
		p.add(path, "want only one of secret_file, secret_env or secret")
	case inline == Redacted:
		p.add(path+".secret", redactedProblem)
	case env != "" && !envNameRE.MatchString(env):
		// Not repeated: what is not a variable's name may be the secret itself.
		p.add(path+".secret_env", "want the name of an environment variable: letters, digits and _, not first a digit")
	default:
		return true
	}
	return false
}

// ReadSecret returns a secret given inline, in the file named file (surrounding white space
// trimmed) or in the environment variable env: whichever is set. The error names where it
// looked, never the secret.
func ReadSecret(inline, file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("secret_file: %w", err)
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("secret_file: %s is empty", file)
	case env != "":
		if s := strings.TrimSpace(os.Getenv(env)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("secret_env: $%s is not set in this process's environment", env)
	case inline != "":
		return inline, nil
	}
	return "", errors.New("no secret, secret_file or secret_env")
}

// Key returns the TSIG key's secret, from wherever the configuration says it is. A key that is
// not base64 is an error naming where it was read, never the key.
func (k TSIG) Key() (string, error) {
	s, err := ReadSecret(k.Secret, k.SecretFile, k.SecretEnv)
	if err != nil {
		return "", fmt.Errorf("tsig.%w", err)
	}
	if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		switch {
		case k.SecretFile != "":
			return "", fmt.Errorf("tsig.secret_file: want a base64 key in %s", k.SecretFile)
		case k.SecretEnv != "":
			return "", fmt.Errorf("tsig.secret_env: want a base64 key in $%s", k.SecretEnv)
		}
		return "", errors.New("tsig.secret: want a base64 key")
	}
	return s, nil
}

// InlineSecrets lists the paths of the secrets written inline in the configuration: stored in
// CONFIG, where every role may read them.
func (c *Config) InlineSecrets() []string {
	var out []string
	for i, z := range c.Zones {
		if z.Push != nil && z.Push.TSIG.Secret != "" {
			out = append(out, fmt.Sprintf("zones[%d].push.tsig.secret", i))
		}
	}
	for i, a := range c.Alerts {
		for j, w := range a.Webhooks {
			if w.Secret != "" {
				out = append(out, fmt.Sprintf("alerts[%d].webhooks[%d].secret", i, j))
			}
		}
	}
	return out
}
