package api

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

// Scopes of a token. Write includes read.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
)

// tokenPrefix marks Detour's API tokens, so a leaked one is easy to recognise and to scan for.
const tokenPrefix = "detour_"

// Token is one entry of a tokens file: a name, a scope and the SHA-256 of the secret. The secret
// itself is never stored.
type Token struct {
	Name  string
	Scope string
	Hash  [sha256.Size]byte
}

// Tokens are the accepted tokens, by hash.
type Tokens struct {
	byHash map[[sha256.Size]byte]Token
}

// ParseTokens reads a tokens file: one token a line, "NAME SCOPE SHA256-HEX"; blank lines and
// lines starting with # are ignored. Every problem is reported, with its line; one token on two
// lines is one, as its name and scope would depend on their order.
func ParseTokens(doc []byte) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Token{}}
	lineOf := map[[sha256.Size]byte]int{}
	var problems []string
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			problems = append(problems, fmt.Sprintf("line %d: want NAME SCOPE SHA256, got %d fields", n, len(f)))
			continue
		}
		tok := Token{Name: f[0], Scope: f[1]}
		switch {
		case tok.Scope == ScopeRead || tok.Scope == ScopeWrite:
		case strings.HasPrefix(tok.Scope, tokenPrefix): // a token pasted there: the error is logged, and must not show it
			problems = append(problems, fmt.Sprintf("line %d: scope: want read or write, got a token (the file holds its SHA-256, never the token)", n))
		default:
			problems = append(problems, fmt.Sprintf("line %d: scope: want read or write, got %q", n, tok.Scope))
		}
		h, err := hex.DecodeString(f[2])
		if err != nil || len(h) != sha256.Size {
			problems = append(problems, fmt.Sprintf("line %d: hash: want 64 hex digits (the SHA-256 of the token)", n))
			continue
		}
		copy(tok.Hash[:], h)
		if first, ok := lineOf[tok.Hash]; ok {
			problems = append(problems, fmt.Sprintf("line %d: the same token as line %d", n, first))
			continue
		}
		t.byHash[tok.Hash], lineOf[tok.Hash] = tok, n
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("tokens file: %s", strings.Join(problems, "; "))
	}
	return t, nil
}

// LoadTokens reads the tokens file at path.
func LoadTokens(path string) (*Tokens, error) {
	t, _, err := loadTokens(path)
	return t, err
}

// loadTokens reads the tokens file at path, returning what it holds too.
func loadTokens(path string) (*Tokens, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read tokens: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, b, nil
}

// Check returns the token whose secret is secret; ok is false for an unknown one.
func (t *Tokens) Check(secret string) (Token, bool) {
	if t == nil || !strings.HasPrefix(secret, tokenPrefix) {
		return Token{}, false
	}
	tok, ok := t.byHash[sha256.Sum256([]byte(secret))]
	return tok, ok
}

// holds reports whether t holds tok's hash: a token revoked since a request was admitted with
// it is not held.
func (t *Tokens) holds(tok Token) bool {
	_, ok := t.byHash[tok.Hash]
	return ok
}

// named reports whether a token is named name.
func (t *Tokens) named(name string) bool {
	for _, tok := range t.byHash {
		if tok.Name == name {
			return true
		}
	}
	return false
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.byHash) }

// NewToken draws a new secret and returns it with its file line. The secret is shown once.
func NewToken(name, scope string) (secret, line string, err error) {
	if name == "" || strings.ContainsRune(name, '#') || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		return "", "", fmt.Errorf("token name: want a word without spaces, got %q", name)
	}
	if scope != ScopeRead && scope != ScopeWrite {
		return "", "", fmt.Errorf("token scope: want read or write, got %q", scope)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("draw token: %w", err)
	}
	secret = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	return secret, fmt.Sprintf("%s %s %s\n", name, scope, hex.EncodeToString(h[:])), nil
}

// AddToken appends a new token to the file at path (created 0600 if missing) and returns its
// secret; a name the file holds already is refused. A file edited by hand whose last line has no
// newline gets one first. It holds the file's lock (lockTokens) from its read to its write.
func AddToken(path, name, scope string) (string, error) {
	secret, line, err := NewToken(name, scope)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("write tokens: %w", err)
	}
	defer f.Close()
	if err := lockTokens(f); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read tokens: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if t.named(name) {
		return "", fmt.Errorf("token name: %q is in %s already, and the API records a change as by api/NAME: pick another name, or remove its line to replace it", name, path)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		return "", fmt.Errorf("write tokens: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write tokens: %w", err)
	}
	return secret, nil
}

// RevokeToken removes the token named name from the file at path, leaving its other lines as
// they were; a file that does not parse, or holds no token of that name, is left alone. The
// file is written over in place, so that it keeps its owner and mode (a file made again would
// be the writer's, perhaps one the API may not read, and the API would then keep the token). It
// holds the file's lock (lockTokens) from its read to its write: two revokes at once each wrote
// the file without their own token's line, and the last one put back the other's token.
func RevokeToken(path, name string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	defer f.Close()
	if err := lockTokens(f); err != nil {
		return err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !t.named(name) {
		return fmt.Errorf("token name: %s holds no token named %q", path, name)
	}
	var kept []byte
	for line := range bytes.Lines(b) {
		if fields := strings.Fields(string(line)); len(fields) == 3 && fields[0] == name {
			continue
		}
		kept = append(kept, line...)
	}
	// The lines kept are written over the file's start, then the rest cut: a revoke stopped in
	// between (killed, the power lost) leaves the old file as it was (the line revoked was its
	// last) or the lines kept followed by the end of the old ones, which repeats a token and
	// does not parse, so the API keeps the tokens it had and says so; emptying the file first
	// lost every token.
	if _, err := f.WriteAt(kept, 0); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	if err := f.Truncate(int64(len(kept))); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}
	return nil
}
