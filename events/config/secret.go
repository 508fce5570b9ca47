package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/textproto"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateSecret checks that a secret is given exactly one way (inline, secret_file or
// secret_env) and reports whether it is.
func validateSecret(p *problems, path, inline, file, env string) bool {
	switch n := given(inline, file, env); {
	case n == 0:
		p.add(path, "want one of secret_file, secret_env or secret")
	case n > 1:
		p.add(path, "want only one of secret_file, secret_env or secret")
	case strings.Contains(inline, Redacted):
		// Refused by redactedProblems.
	case env != "" && !envNameRE.MatchString(env):
		// Not repeated: what is not a variable's name may be the secret itself.
		p.add(path+".secret_env", envNameWant)
	default:
		return true
	}
	return false
}

// envNameWant is what the name of an environment variable must be.
const envNameWant = "want the name of an environment variable: letters, digits and _, not first a digit"

// given counts the values set among values.
func given(values ...string) int {
	n := 0
	for _, s := range values {
		if s != "" {
			n++
		}
	}
	return n
}

// ReadSecret returns a secret given inline, in the file named file, read if it lies in one
// of dirs (surrounding white space trimmed), or in the environment variable env: whichever is
// set. The error names where it looked, never the secret.
func ReadSecret(dirs CredentialDirs, inline, file, env string) (string, error) {
	return readValue(dirs, "secret", inline, file, env)
}

// readValue returns the value of field (secret, url) given inline, in the file named file,
// read if it lies in one of dirs (surrounding white space trimmed), or in the environment
// variable env: whichever is set. The error names where it looked, never the value.
func readValue(dirs CredentialDirs, field, inline, file, env string) (string, error) {
	switch {
	case file != "":
		s, err := readTrimmedFile(dirs, file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", field, err)
		}
		return s, nil
	case env != "":
		s, err := readTrimmedEnv(env)
		if err != nil {
			return "", fmt.Errorf("%s_env: %w", field, err)
		}
		return s, nil
	case inline != "":
		return inline, nil
	}
	return "", fmt.Errorf("no %s, %s_file or %s_env", field, field, field)
}

// readTrimmedFile returns what the file named file, in one of dirs, holds, surrounding white
// space trimmed; an empty one is an error.
func readTrimmedFile(dirs CredentialDirs, file string) (string, error) {
	b, _, err := dirs.ReadFile(file)
	if err != nil {
		return "", err
	}
	return trimmed(file, b)
}

// trimmed returns b, read from file, with surrounding white space trimmed; an empty one is an
// error.
func trimmed(file string, b []byte) (string, error) {
	if s := strings.TrimSpace(string(b)); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("%s is empty", file)
}

// readTrimmedEnv returns the environment variable env, surrounding white space trimmed; an
// empty or unset one is an error.
func readTrimmedEnv(env string) (string, error) {
	if s := strings.TrimSpace(os.Getenv(env)); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("$%s is not set in this process's environment", env)
}

// maxFileBytes is the most a file holding a secret, a header or what a check sends may hold.
const maxFileBytes = 64 << 10

// readRegular returns what the regular file at path beneath root (the real path of the file
// named name, CredentialDirs.Resolve) holds, at most maxFileBytes, and the description of the
// file it opened. What is not a regular file is refused, opened without waiting for a writer
// (CredentialDirs.ReadFile). The error names the file by name, never what it holds.
func readRegular(name string, root *os.Root, path string) ([]byte, fs.FileInfo, error) {
	f, err := root.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Op, pe.Path = "open", name
		}
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	switch {
	case err != nil:
		return nil, nil, err
	case len(b) > maxFileBytes:
		return nil, nil, fmt.Errorf("%s is longer than %d bytes", name, maxFileBytes)
	}
	return b, fi, nil
}

// SecretFileValue returns a secret from b, what the file named file holds
// (CredentialDirs.ReadFile): surrounding white space trimmed; empty, it is an error naming the
// file.
func SecretFileValue(file string, b []byte) (string, error) {
	return trimmed(file, b)
}

// TSIGFileValue returns a TSIG key's secret from b, what the file named file holds
// (CredentialDirs.ReadFile): surrounding white space trimmed, base64; else an error naming the
// file, never what it holds.
func TSIGFileValue(file string, b []byte) (string, error) {
	s, err := trimmed(file, b)
	if err != nil {
		return "", err
	}
	if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		return "", fmt.Errorf("want a base64 key in %s", file)
	}
	return s, nil
}

// Key returns the TSIG key's secret, from wherever the configuration says it is: a file only
// in one of dirs. A key that is not base64 is an error naming where it was read, never the key.
func (k TSIG) Key(dirs CredentialDirs) (string, error) {
	s, err := ReadSecret(dirs, k.Secret, k.SecretFile, k.SecretEnv)
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

// secretField is a field of the configuration that may hold a secret written inline.
type secretField struct {
	// path names the field: "name" a member, "name[]" each element of a list, "*" each key of
	// a map.
	path string
	// redact returns value, the field's (key the last name in its path), with its secret part
	// replaced by Redacted, and whether it had one.
	redact func(key, value string) (string, bool)
	// write is what to write in place of Redacted.
	write string
	// instead is what to do rather than store the secret in CONFIG.
	instead string
}

// secretFields are the fields that may hold a secret written inline: the one list Redact, the
// refusal of Redacted (Validate) and InlineSecrets read.
var secretFields = []secretField{
	{"zones[].transfer_tsig.secret", wholeSecret, "the secret, or use secret_file or secret_env", "use secret_file or secret_env"},
	{"zones[].push.tsig.secret", wholeSecret, "the secret, or use secret_file or secret_env", "use secret_file or secret_env"},
	{"apps[].check.path", redactURL, "the path", "a check's path cannot be read from a file or the environment: send the credential in a header with headers_file or headers_env where the checked service takes one there, or give it a credential that only lets it be checked"},
	{"apps[].check.send", redactSend, "what the check sends, or use send_file or send_env", "use send_file or send_env"},
	{"apps[].check.headers.*", redactHeader, "the header's value, or use headers_file or headers_env", "use headers_file or headers_env"},
	{"alerts[].webhooks[].secret", wholeSecret, "the secret, or use secret_file or secret_env", "use secret_file or secret_env"},
	{"alerts[].webhooks[].url", redactURL, "the URL, or use url_file or url_env", "use url_file or url_env"},
}

// wholeSecret redacts the whole of a secret field.
func wholeSecret(_, value string) (string, bool) { return Redacted, true }

// credentialNames are the names of a header or a URL's query parameter whose value is a
// credential, compared whole once lowercased and with only their ASCII letters and digits (so
// X-Api-Key is xapikey, and so is "X-Api-Key " or "X-Api-Key:", which apply refuses but a
// version stored before it did may hold); credentialSuffixes end such a name too (X-Auth-Token, client_secret,
// X-Amz-Signature, X-Auth-Key, DD-Application-Key). A name that only holds one of these words
// (assign, keyword, sort_key, X-Session-Region) names no credential.
var (
	credentialNames    = []string{"authorization", "proxyauthorization", "cookie", "auth", "key", "password", "passwd", "pwd", "pass", "sig", "session", "jwt"}
	credentialSuffixes = []string{
		"token", "secret", "password", "apikey", "signature", "credential", "credentials", "sessionid", "sessid",
		"accesskey", "secretkey", "privatekey", "authkey", "appkey", "applicationkey", "subscriptionkey", "functionskey",
	}
)

// credentialName reports whether name, a header's or a query parameter's, names a credential
// (credentialNames).
func credentialName(name string) bool {
	name = strings.ToLower(strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return -1
	}, name))
	return slices.Contains(credentialNames, name) ||
		slices.ContainsFunc(credentialSuffixes, func(s string) bool { return strings.HasSuffix(name, s) })
}

// authSchemes are the HTTP authentication schemes whose value, under any header, is a
// credential.
var authSchemes = []string{"bearer", "basic", "digest", "token"}

// redactHeader redacts the value of a header whose name says it is a credential (Authorization,
// Proxy-Authorization, Cookie, X-Api-Key, X-Auth-Token…: credentialName), or that is one (an
// authentication scheme and its credential: Bearer, Basic, Digest, Token).
func redactHeader(name, value string) (string, bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(value), " ")
	if credentialName(name) || slices.Contains(authSchemes, strings.ToLower(scheme)) && strings.TrimSpace(rest) != "" {
		return Redacted, true
	}
	return value, false
}

// redactSend redacts what a tcp check sends after it logs in, from the login's argument to the
// end: a line that starts with AUTH (Redis, SMTP) or PASS (FTP, POP3), an IMAP command (after
// its tag) LOGIN or AUTHENTICATE, or a Redis HELLO's AUTH, followed by an argument; or, in
// Redis's RESP, an AUTH alone on its line after a bulk string's length ($4), followed by
// anything (its arguments are the lines after it).
func redactSend(_, value string) (string, bool) {
	at, bulk := 0, false
	for line := range strings.SplitAfterSeq(value, "\n") {
		var words []string
		var ends []int
		for rest, off := line, 0; ; {
			w := strings.Fields(rest)
			if len(w) == 0 {
				break
			}
			i := strings.Index(rest, w[0]) + len(w[0])
			words, ends = append(words, w[0]), append(ends, off+i)
			rest, off = rest[i:], off+i
		}
		for i, w := range words {
			login := i == 0 && (strings.EqualFold(w, "AUTH") || strings.EqualFold(w, "PASS")) ||
				i == 1 && (strings.EqualFold(w, "LOGIN") || strings.EqualFold(w, "AUTHENTICATE")) ||
				i >= 2 && strings.EqualFold(words[0], "HELLO") && strings.EqualFold(w, "AUTH")
			resp := len(words) == 1 && bulk && strings.TrimSpace(value[at+len(line):]) != ""
			if login && (i+1 < len(words) || resp) {
				return value[:at+ends[i]] + " " + Redacted, true
			}
		}
		bulk = len(words) == 1 && strings.HasPrefix(words[0], "$")
		at += len(line)
	}
	return value, false
}

// tokenHosts are the webhook services whose URL's path is the token (Slack, Discord, Teams,
// Power Automate, IFTTT).
var tokenHosts = []string{"hooks.slack.com", "discord.com", "discordapp.com", ".webhook.office.com", "outlook.office.com", ".logic.azure.com", "maker.ifttt.com"}

// hookSegments are the path segments after which a webhook URL's path is its token
// (Mattermost's, Rocket.Chat's /hooks/TOKEN).
var hookSegments = []string{"hook", "hooks", "webhook", "webhooks"}

// redactURL redacts the secret parts of a URL, or of a path with its query: the password of its
// user information (the user when there is no password); its whole path and query on a host of
// tokenHosts; the rest of the path after a segment of hookSegments; and the value of each query
// parameter (or fragment's) whose name is a credential's (credentialName), however short. A
// segment or a value is not judged by how it looks: what looks like a token (a region, a build
// id) is shown, so that what config get shows without a secret, apply takes back.
func redactURL(_, value string) (string, bool) {
	rest, out, secret := value, "", false
	if i := strings.Index(rest, "://"); i >= 0 && schemeRE.MatchString(rest[:i]) {
		end := i + 3 + strings.IndexAny(rest[i+3:]+"/", "/?#")
		host := rest[i+3 : end]
		out, rest = rest[:i+3], rest[end:]
		if at := strings.LastIndex(host, "@"); at >= 0 {
			user, _, hasPass := strings.Cut(host[:at], ":")
			if hasPass {
				out += user + ":" + Redacted + "@"
			} else {
				out += Redacted + "@"
			}
			host, secret = host[at+1:], true
		}
		out += host
		if rest != "" && rest != "/" && tokenHost(host) {
			return out + "/" + Redacted, true
		}
	}
	path, query, hasQuery := strings.Cut(rest, "?")
	fragment, hasFragment := "", false
	if hasQuery {
		query, fragment, hasFragment = strings.Cut(query, "#")
	} else {
		path, fragment, hasFragment = strings.Cut(path, "#")
	}
	segments := strings.Split(path, "/")
	for i, s := range segments {
		if slices.Contains(hookSegments, strings.ToLower(unescapeSegment(s))) && i+1 < len(segments) && strings.Join(segments[i+1:], "") != "" {
			segments, secret = append(segments[:i+1], Redacted), true
			break
		}
	}
	out += strings.Join(segments, "/")
	for _, part := range []struct {
		sep, text string
		has       bool
	}{{"?", query, hasQuery}, {"#", fragment, hasFragment}} {
		if !part.has {
			continue
		}
		params := strings.Split(part.text, "&")
		for i, kv := range params {
			if k, v, ok := strings.Cut(kv, "="); ok && v != "" && credentialName(unescape(k)) {
				params[i], secret = k+"="+Redacted, true
			}
		}
		out += part.sep + strings.Join(params, "&")
	}
	return out, secret
}

// schemeRE matches a URL's scheme: what comes before "://" elsewhere (a URL in a check path's
// query) is no scheme, nor what follows it a host.
var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// unescape returns a query parameter's name as a server reads it, or as written when it is not
// escaped well.
func unescape(name string) string {
	if u, err := url.QueryUnescape(name); err == nil {
		return u
	}
	return name
}

// unescapeSegment returns a path's segment as a server reads it, or as written when it is not
// escaped well.
func unescapeSegment(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// tokenHost reports whether host (with its port) is one of tokenHosts or under one.
func tokenHost(host string) bool {
	if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return slices.ContainsFunc(tokenHosts, func(t string) bool {
		if strings.HasPrefix(t, ".") {
			return strings.HasSuffix(host, t)
		}
		return host == t || strings.HasSuffix(host, "."+t)
	})
}

// InlineSecrets lists the paths of the secrets written inline in the configuration (the fields
// secretFields lists, where they hold one): stored in CONFIG, where every role may read them.
func (c *Config) InlineSecrets() []string {
	var out []string
	c.redacted(func(path string, _ *secretField) { out = append(out, path) })
	return out
}

// SecretWarnings says of each secret c holds inline (InlineSecrets) that CONFIG stores it where
// every role may read it, and what to do instead; detour apply and the API's apply and plan
// warn of each.
func (c *Config) SecretWarnings() []string {
	var out []string
	c.redacted(func(path string, f *secretField) {
		out = append(out, path+" is stored in CONFIG, where every role may read it: "+f.instead)
	})
	return out
}

// WithSecretsRedacted returns a copy of c with each secret written inline (InlineSecrets) as
// Redact shows it: for what shows a configuration's values, such as detour plan.
func (c *Config) WithSecretsRedacted() *Config {
	return c.redacted(func(string, *secretField) {})
}

// redacted calls found with the path and field of each secret c holds inline, in the order of
// secretFields, and returns a copy of c with each as Redact shows it. It walks c's secret fields
// alone, copying only what holds a secret: an encoding of the whole configuration for it took
// 0.3 s at 10,000 endpoints.
func (c *Config) redacted(found func(path string, f *secretField)) *Config {
	v := reflect.ValueOf(*c)
	for i := range secretFields {
		f := &secretFields[i]
		v, _ = redactValue(v, "", strings.Split(f.path, "."), "", func(path, key, value string) (string, bool) {
			shown, secret := f.redact(key, value)
			if strings.Contains(value, Redacted) {
				// Redacted already, or written where a secret may be: refused (Validate).
				shown, secret = value, true
			}
			if secret {
				found(path, f)
			}
			return shown, secret
		})
	}
	out := v.Interface().(Config)
	return &out
}

// redactValue returns v with the string each of its members steps names (secretFields'
// syntax; key the last name) replaced by what redact returns, when redact says it holds a
// secret, and whether any did. It visits them in the order inlineSecretNodes visits a
// document's: the elements of a list in turn, the keys of a map sorted. What holds no secret
// is v itself, not a copy.
func redactValue(v reflect.Value, path string, steps []string, key string, redact func(path, key, value string) (string, bool)) (reflect.Value, bool) {
	switch {
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return v, false
		}
		e, changed := redactValue(v.Elem(), path, steps, key, redact)
		if !changed {
			return v, false
		}
		p := reflect.New(e.Type())
		p.Elem().Set(e)
		return p, true
	case len(steps) == 0:
		if v.Kind() != reflect.String || v.String() == "" {
			return v, false
		}
		shown, secret := redact(path, key, v.String())
		return reflect.ValueOf(shown).Convert(v.Type()), secret
	case steps[0] == "*":
		if v.Kind() != reflect.Map || v.Len() == 0 {
			return v, false
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		var out reflect.Value
		for _, k := range keys {
			e, changed := redactValue(v.MapIndex(k), join(path, k.String()), steps[1:], k.String(), redact)
			if changed {
				if !out.IsValid() {
					out = reflect.MakeMapWithSize(v.Type(), v.Len())
					for it := v.MapRange(); it.Next(); {
						out.SetMapIndex(it.Key(), it.Value())
					}
				}
				out.SetMapIndex(k, e)
			}
		}
		if !out.IsValid() {
			return v, false
		}
		return out, true
	}
	name, list := strings.CutSuffix(steps[0], "[]")
	i := yamlField(v.Type(), name)
	if v.Kind() != reflect.Struct || i < 0 {
		return v, false
	}
	field, changed := v.Field(i), false
	if list {
		var out reflect.Value
		for j := range field.Len() {
			e, ch := redactValue(field.Index(j), fmt.Sprintf("%s[%d]", join(path, name), j), steps[1:], name, redact)
			if ch {
				if !out.IsValid() {
					out = reflect.MakeSlice(field.Type(), field.Len(), field.Len())
					reflect.Copy(out, field)
				}
				out.Index(j).Set(e)
			}
		}
		field, changed = out, out.IsValid()
	} else {
		field, changed = redactValue(field, join(path, name), steps[1:], name, redact)
	}
	if !changed {
		return v, false
	}
	out := reflect.New(v.Type()).Elem()
	out.Set(v)
	out.Field(i).Set(field)
	return out, true
}

// yamlField returns the index of the field of the struct type t that YAML names name, or -1.
func yamlField(t reflect.Type, name string) int {
	if t.Kind() != reflect.Struct {
		return -1
	}
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag == name {
			return i
		}
	}
	return -1
}

// redactedProblems refuses every secret field of the decoded document root that holds Redacted:
// applied, the marker would be the secret. It reads the tree parse decoded, as Redact reads a
// document: encoding the Config again for it took three quarters of a parse (a document of
// 10,000 endpoints parsed in 469 ms with it, 117 ms without), and every role parses every
// version.
func redactedProblems(root *yaml.Node) problems {
	var p problems
	for _, s := range inlineSecretNodes(root) {
		if strings.Contains(s.node.Value, Redacted) {
			p.add(s.path, "holds %q, which detour config get shows in place of a secret: write %s", Redacted, s.field.write)
		}
	}
	return p
}

// headerNameWant is what a header's name must be: an HTTP token (RFC 9110), as net/http, which
// refuses any other, checks it.
const headerNameWant = "want a header name (letters, digits and !#$%%&'*+-.^_`|~), got %q"

// headerValueWant is what a header's value must be: net/http sends no other, and CR or LF would
// end the header.
const headerValueWant = "want a value without CR, LF, NUL or another control character but tab"

// validateHeaders checks that each header of k has a name net/http sends (headerNameWant) and
// is given once, in one of headers, headers_file and headers_env (names compared as HTTP
// compares them), a value written in headers without a control character but tab (net/http sends none,
// and CR or LF would end the header), a file by its path and a variable by its name.
func (k *Check) validateHeaders(p *problems, path string) {
	given := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(k.Headers)) {
		canonical := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			p.add(path+".headers", headerNameWant, name)
		case given[canonical]:
			// Two spellings of one header: the prober would send one of them, either.
			p.add(path+".headers."+name, "want only one of headers, headers_file or headers_env for %s", canonical)
		case !httpguts.ValidHeaderFieldValue(k.Headers[name]):
			// Not repeated: the value may be a credential.
			p.add(path+".headers."+name, headerValueWant)
		}
		given[canonical] = true
	}
	for _, m := range []struct {
		field  string
		values map[string]string
	}{{"headers_file", k.HeadersFile}, {"headers_env", k.HeadersEnv}} {
		for _, name := range slices.Sorted(maps.Keys(m.values)) {
			at, v, canonical := path+"."+m.field+"."+name, m.values[name], textproto.CanonicalMIMEHeaderKey(name)
			switch {
			case !httpguts.ValidHeaderFieldName(name):
				p.add(path+"."+m.field, headerNameWant, name)
			case given[canonical]:
				p.add(at, "want only one of headers, headers_file or headers_env for %s", canonical)
			case m.field == "headers_file" && strings.TrimSpace(v) == "":
				p.add(at, "want the path of a file")
			case m.field == "headers_env" && !envNameRE.MatchString(v):
				// Not repeated: what is not a variable's name may be the credential itself.
				p.add(at, envNameWant)
			}
			given[canonical] = true
		}
	}
}

// ReadEnvHeaders returns the headers of the check but those of HeadersFile: Headers, and the
// value of each header of HeadersEnv read from its environment variable (surrounding white space
// trimmed; one holding a control character but tab refused, as net/http would refuse to send
// it). The error names the header and where it looked, never a value. The prober reads the files
// of HeadersFile itself (CredentialDirs.ReadFile, HeaderFileValue), and again when they change.
func (k Check) ReadEnvHeaders() (map[string]string, error) {
	out := maps.Clone(k.Headers)
	if len(k.HeadersEnv) > 0 && out == nil {
		out = map[string]string{}
	}
	for _, name := range slices.Sorted(maps.Keys(k.HeadersEnv)) {
		v, err := readTrimmedEnv(k.HeadersEnv[name])
		if err == nil {
			err = headerValue("$"+k.HeadersEnv[name], v)
		}
		if err != nil {
			return nil, fmt.Errorf("check.headers_env.%s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// HeaderFileValue returns a header's value from b, what the file named file holds
// (CredentialDirs.ReadFile): surrounding white space trimmed; empty, or holding a control
// character other than tab, it is an error naming the file, never what it holds.
func HeaderFileValue(file string, b []byte) (string, error) {
	v, err := trimmed(file, b)
	if err == nil {
		err = headerValue(file, v)
	}
	return v, err
}

// SendFileValue returns what a tcp check sends from b, what the file named file holds
// (CredentialDirs.ReadFile): as it is, a protocol's line ends kept; empty, it is an error
// naming the file.
func SendFileValue(file string, b []byte) (string, error) {
	if len(b) == 0 {
		return "", fmt.Errorf("%s is empty", file)
	}
	return string(b), nil
}

// headerValue refuses v, a header's value read from where (a file's path, $VARIABLE), when it
// holds a control character other than tab (headerValueWant). The error names where, never v.
func headerValue(where, v string) error {
	if !httpguts.ValidHeaderFieldValue(v) {
		return fmt.Errorf("%s holds a control character other than tab (CR, LF, NUL…)", where)
	}
	return nil
}

// ReadSend returns what a tcp check sends but from SendFile: Send, or what the environment
// variable SendEnv holds, as it is (a protocol's line ends kept). The error names where it
// looked, never what it found. The prober reads SendFile itself (CredentialDirs.ReadFile,
// SendFileValue), and again when it changes.
func (k Check) ReadSend() (string, error) {
	switch {
	case k.SendEnv != "":
		if s := os.Getenv(k.SendEnv); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("check.send_env: $%s is not set in this process's environment", k.SendEnv)
	}
	return k.Send, nil
}
