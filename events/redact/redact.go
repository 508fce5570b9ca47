// Package redact removes secrets from text before it reaches a log or a terminal: the password
// of every URL (nats://dns:dns-demo@host becomes nats://dns:REDACTED@host), in a string or in
// everything written through a Writer; and it shows the control characters of text from the
// streams as escapes (Controls).
package redact

import (
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
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

// Controls returns s with every character that is not printable (a control character, newline
// and tab included, a format character such as a bidirectional override) and every byte that is
// not UTF-8 written as its Go escape (\x1b, \n, \u009b, \xff), and s itself when it has none.
// What a process published (a check's error, which quotes the checked server; a reason; a
// subject) reaches an operator's terminal in detour events and detour replay: raw, an escape
// sequence in it could retitle the terminal, write its clipboard or rewrite the lines above,
// and a newline print a line that looks like another event.
func Controls(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !strconv.IsPrint(r) })
	if i < 0 {
		return s
	}
	b := []byte(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\x`...)
			b = append(b, "0123456789abcdef"[s[i]>>4], "0123456789abcdef"[s[i]&15])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b = append(b, q[1:len(q)-1]...)
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
