package natsd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// SeedFile is the name of the credentials file in the data directory: the seed of the nkey
// that every role of `detour up` and its operator connect with.
const SeedFile = "nats-user.nk"

// Credentials are the embedded server's one identity: an nkey user whose seed lives in a file
// only its owner may read.
type Credentials struct {
	// File is the seed file's path; the nats CLI takes it as --nkey FILE.
	File string
	// Public is the user's public key, the one the server lets in.
	Public string
}

// LoadCredentials reads the seed file in dir, or creates it (0600, dir 0700) on first start. A
// file that others may read is refused rather than trusted.
func LoadCredentials(dir string) (Credentials, error) {
	path := filepath.Join(dir, SeedFile)
	seed, err := readSeed(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed, err = createSeed(dir, path)
	}
	if err != nil {
		return Credentials{}, err
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return Credentials{}, fmt.Errorf("nats credentials %s: not an nkey seed: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return Credentials{}, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	if pub[0] != 'U' {
		return Credentials{}, fmt.Errorf("nats credentials %s: want a user nkey (public key U…), got %c…", path, pub[0])
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	return Credentials{File: abs, Public: pub}, nil
}

// CheckSeedFile refuses an nkey seed file that its group or others may read or write: a
// secret others can read identifies no one. Every reader of a seed file (detour up, the roles,
// the operator's commands) calls it, so all refuse the same file with the same words.
func CheckSeedFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read nats credentials: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("nats credentials %s: mode %04o lets others read it: chmod 600 %s", path, perm, path)
	}
	return nil
}

// SeedOption is the nats.go option that connects with the nkey seed in the file at path, once
// CheckSeedFile accepts the file.
func SeedOption(path string) (nats.Option, error) {
	if err := CheckSeedFile(path); err != nil {
		return nil, err
	}
	o, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("nats credentials %s: %w", path, err)
	}
	return o, nil
}

func readSeed(path string) ([]byte, error) {
	if err := CheckSeedFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nats credentials: %w", err)
	}
	return b, nil
}

func createSeed(dir, path string) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create nats credentials: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("create nats credentials: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create nats credentials: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create nats credentials: %w", err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write nats credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write nats credentials: %w", err)
	}
	return seed, nil
}

// Option is the nats.go option that connects with these credentials.
func (c Credentials) Option() (nats.Option, error) { return SeedOption(c.File) }
