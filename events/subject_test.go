package events

import (
	"regexp"
	"testing"
)

// tokenRE is the definition ValidToken implements.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func FuzzValidTokenAgreesWithItsRegexp(f *testing.F) {
	for _, s := range []string{"", "eu-west", "app_1", "a.b", "a b", "é", "*", ">", "A-Z_09", "\x00", "x\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidToken(s), tokenRE.MatchString(s); got != want {
			t.Errorf("ValidToken(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
