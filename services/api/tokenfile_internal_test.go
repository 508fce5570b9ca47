package api

import (
	"strings"
	"testing"
)

// A change to the tokens file is taken once two looks in a row read it, so that a file caught
// half-written is never served: a look that read it once, then looks that read the file as
// served, or could not read it, and one more look that read it again are not two agreeing looks.
// An editor or a tool that writes the file over in place with the same content (vim with
// backupcopy=yes, `cat tokens.orig > tokens`) leaves it empty for an instant each time: caught
// so twice, a minute apart, the empty file was served, and every token refused until the next
// two looks.
func TestATokensFileIsTakenOnlyWhenTwoLooksInARowReadIt(t *testing.T) {
	served, half := []byte("ops write "+strings.Repeat("ab", 32)+"\n"), []byte{}
	for _, tc := range []struct {
		name  string
		looks [][]byte // nil: a look that could not read the file
		want  []bool
	}{
		{"read once, then as served, then again", [][]byte{half, served, served, half, half}, []bool{false, false, false, false, true}},
		{"read, then not read, then again", [][]byte{half, nil, half, half}, []bool{false, false, false, true}},
		{"read twice", [][]byte{half, half, half}, []bool{false, true, false}},
	} {
		l := tokensLooks{taken: served, seen: served, read: true}
		for i, doc := range tc.looks {
			if doc == nil {
				l.unread()
				if tc.want[i] {
					t.Fatalf("%s: look %d cannot take what it did not read", tc.name, i)
				}
				continue
			}
			if got := l.take(doc); got != tc.want[i] {
				t.Errorf("%s: look %d (%q) taken %v, want %v", tc.name, i, doc, got, tc.want[i])
			}
		}
	}
}
