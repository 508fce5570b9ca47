package dnsupdater

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
)

func TestAServersIDIsKeptInItsDataDirAndADamagedOneIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := loadServerID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(first); err != nil {
		t.Fatalf("a first start's id %q is no UUID: %v", first, err)
	}
	if again, err := loadServerID(dir); err != nil || again != first {
		t.Errorf("the next start's id: want %s kept, got %q (%v)", first, again, err)
	}
	if other, err := loadServerID(t.TempDir()); err != nil || other == first {
		t.Errorf("another data dir's id: want one of its own, got %q (%v)", other, err)
	}
	if err := os.WriteFile(filepath.Join(dir, serverIDFile), []byte("not an id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if id, err := loadServerID(dir); err == nil {
		t.Errorf("a damaged id file: want an error, got id %q", id)
	}
}
