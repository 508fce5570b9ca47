// Package redact removes secrets from text before it reaches a log or a terminal: the password
// of every URL (nats://dns:dns-demo@host becomes nats://dns:REDACTED@host), in a string or in
// everything written through a Writer.
package redact

import (
	"io"
	"regexp"
)

// Mask replaces a secret.
const Mask = "REDACTED"

// userinfo matches scheme://user:password@ with the password in group 2. The password may hold
// anything but '/', '"' and white space, and runs to the last '@' before them: url.Parse, and
// so the NATS client, accepts a password holding ' or an unencoded '@'.
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:@/\s"']*):([^/\s"]*)@`)

// String returns s with the password of every URL in it replaced by Mask.
func String(s string) string {
	if !userinfo.MatchString(s) {
		return s
	}
	return userinfo.ReplaceAllString(s, "${1}:"+Mask+"@")
}

// Writer returns a writer that redacts each write with String before passing it on to w. It
// suits writers that receive whole lines per write, as zerolog's do.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (r writer) Write(p []byte) (int, error) {
	if !userinfo.Match(p) {
		return r.w.Write(p)
	}
	if _, err := r.w.Write(userinfo.ReplaceAll(p, []byte("${1}:"+Mask+"@"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
