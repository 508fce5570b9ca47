package dnsupdater

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"testing"

	"github.com/detourdev/detour/events/atomicfile"
)

// A write of the snapshot, the serials or the server's id that a crash cut short leaves its
// temporary file in the data dir, a whole base each for the snapshot: the next start removes
// them, or a crash loop piles them up. 8a0b521 renamed them ("."+name+".*") and the start's
// glob (name+".*") found none of them.
func TestAStartRemovesTheTemporaryFilesACrashedWriteLeft(t *testing.T) {
	dir := t.TempDir()
	var left []string
	for _, name := range []string{snapshotFile, serialsFile, serverIDFile} {
		_ = atomicfile.Write(dir, name, func(w io.Writer) error {
			f, ok := w.(*os.File)
			if !ok {
				t.Fatalf("atomicfile.Write wrote %s to a %T, want the temporary *os.File", name, w)
			}
			left = append(left, f.Name()) // the name a crash now would leave
			return errors.New("crashed")
		})
	}
	for _, p := range left {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release, err := openDataDir(dir, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, p := range left {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s, left by a crashed write, is still there after a start (%v), want it removed", p, err)
		}
	}
}
