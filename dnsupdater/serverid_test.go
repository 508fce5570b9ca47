package dnsupdater

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
)

func TestAServersIDIsKeptInItsDataDirAndADamagedOneReplaced(t *testing.T) {
	dir := t.TempDir()
	first, damaged, err := loadServerID(dir)
	if err != nil || damaged != nil {
		t.Fatal(damaged, err)
	}
	if _, err := uuid.Parse(first); err != nil {
		t.Fatalf("a first start's id %q is no UUID: %v", first, err)
	}
	if again, damaged, err := loadServerID(dir); err != nil || damaged != nil || again != first {
		t.Errorf("the next start's id: want %s kept, got %q (%v, %v)", first, again, damaged, err)
	}
	if other, _, err := loadServerID(t.TempDir()); err != nil || other == first {
		t.Errorf("another data dir's id: want one of its own, got %q (%v)", other, err)
	}
	if err := os.WriteFile(filepath.Join(dir, serverIDFile), []byte("not an id\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	replaced, damaged, err := loadServerID(dir)
	if err != nil || damaged == nil || replaced == first {
		t.Fatalf("a damaged id file: want a new id and the damage told, got %q (%v, %v)", replaced, damaged, err)
	}
	if again, damaged, err := loadServerID(dir); err != nil || damaged != nil || again != replaced {
		t.Errorf("the start after the damage: want the new id %s kept, got %q (%v, %v)", replaced, again, damaged, err)
	}
}
