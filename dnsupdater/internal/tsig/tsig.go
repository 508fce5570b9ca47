// Package tsig is a TSIG key (RFC 8945) of the configuration, read from wherever the
// configuration says it is: it signs and verifies messages for miekg/dns, matching the key's
// name in any case, and only with the key's own algorithm.
package tsig

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/detourdev/detour/events/config"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// Algorithms maps each algorithm the configuration names to its DNS name.
var Algorithms = map[string]string{
	"hmac-sha1": dns.HmacSHA1, "hmac-sha256": dns.HmacSHA256, "hmac-sha384": dns.HmacSHA384, "hmac-sha512": dns.HmacSHA512,
}

// Key signs and verifies with one TSIG key, matching its name whatever its letters' case.
// A name is compared without regard to case in DNS (RFC 4343), and a peer signs its answer
// with its own spelling of the key's name: miekg/dns's own provider looks the name up exactly,
// so an answer from a primary that spells it otherwise failed to verify, and every update it
// applied read as a failed push.
type Key struct {
	// Name is the key's name, fully qualified, as the configuration spells it.
	Name string
	// Algorithm is the DNS name of its algorithm (dns.HmacSHA256…).
	Algorithm string
	// secret is the key's, given inline or in the environment; file holds it instead when the
	// configuration names a file, read again as it changes.
	secret []byte
	file   *config.WatchedFile
	hash   func() hash.Hash
}

// New returns the key the configuration k describes, its secret read from where k says (a file
// only in one of dirs). A secret_file is read again as it changes (config.WatchedFile: within
// config.FileRecheck and config.FileSettle of a rotation, logged to log), and a read that
// fails keeps the key read before. The error names the field at fault (tsig.algorithm,
// tsig.secret_file…), never the secret.
func New(k config.TSIG, dirs config.CredentialDirs, log zerolog.Logger) (*Key, error) {
	return newKey(k, dirs, log, time.Now, config.FileRecheck)
}

// newKey is New, a secret_file looked at again at most every recheck of now.
func newKey(k config.TSIG, dirs config.CredentialDirs, log zerolog.Logger, now func() time.Time, recheck time.Duration) (*Key, error) {
	alg, ok := Algorithms[k.Algorithm]
	if !ok {
		return nil, fmt.Errorf("tsig.algorithm: unknown %q", k.Algorithm)
	}
	if k.Name == "" {
		return nil, errors.New("tsig.name: a key name is required")
	}
	key := &Key{Name: dns.Fqdn(k.Name), Algorithm: alg}
	if k.SecretFile != "" {
		key.file = config.WatchFile(k.SecretFile, dirs, config.TSIGFileValue, now, recheck, config.FileLog{
			Log:     log.With().Str("key", key.Name).Logger(),
			Changed: "tsig key file changed: the key signs and verifies with what it holds now",
			Kept:    "tsig key file not read again: the key keeps what it held",
			Refused: "tsig key file refused: not in a credential directory",
		})
		if v := key.file.Load(); v.Err != nil {
			return nil, fmt.Errorf("tsig.secret_file: %w", v.Err)
		}
	} else {
		secret, err := k.Key(dirs)
		if err != nil {
			return nil, err
		}
		if key.secret, err = base64.StdEncoding.DecodeString(secret); err != nil {
			return nil, errors.New("tsig: the key is not base64")
		}
	}
	switch alg {
	case dns.HmacSHA1:
		key.hash = sha1.New
	case dns.HmacSHA256:
		key.hash = sha256.New
	case dns.HmacSHA384:
		key.hash = sha512.New384
	case dns.HmacSHA512:
		key.hash = sha512.New
	}
	return key, nil
}

// Signs reports whether t is a TSIG record of this key: its name, in any case, and its algorithm.
// A record that names the key with another algorithm is not (RFC 8945 §5.2.1: BADKEY).
func (k *Key) Signs(t *dns.TSIG) bool {
	return strings.EqualFold(t.Hdr.Name, k.Name) && strings.EqualFold(t.Algorithm, k.Algorithm)
}

// Same reports whether o is the same key as k: name, algorithm and secret (each as it is now).
func (k *Key) Same(o *Key) bool {
	return o != nil && strings.EqualFold(k.Name, o.Name) && k.Algorithm == o.Algorithm && hmac.Equal(k.raw(), o.raw())
}

// Snapshot returns the key with its secret as it is now, fixed though its file changes later:
// what signs and verifies every message of one exchange (a request and its reply, each message
// of a zone transfer, a NOTIFY and its answer), which a rotation in between would otherwise
// split between two secrets (RFC 8945 §5.3: a reply is signed with its request's key).
func (k *Key) Snapshot() *Key {
	if k.file == nil {
		return k
	}
	return &Key{Name: k.Name, Algorithm: k.Algorithm, secret: k.raw(), hash: k.hash}
}

// raw returns the key's secret as it is now: its file's value last read well (New refuses a
// key whose file was never read well, and config.TSIGFileValue any that is not base64).
func (k *Key) raw() []byte {
	if k.file == nil {
		return k.secret
	}
	b, _ := base64.StdEncoding.DecodeString(k.file.Load().S)
	return b
}

// Generate returns the MAC of msg, signed as t says.
func (k *Key) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if !strings.EqualFold(t.Hdr.Name, k.Name) {
		return nil, dns.ErrSecret
	}
	if !strings.EqualFold(t.Algorithm, k.Algorithm) {
		return nil, dns.ErrKeyAlg
	}
	m := hmac.New(k.hash, k.raw())
	m.Write(msg)
	return m.Sum(nil), nil
}

// Verify checks t's MAC over msg: the whole MAC, never one cut short.
func (k *Key) Verify(msg []byte, t *dns.TSIG) error {
	return k.verify(msg, t, false)
}

// verify checks t's MAC over msg, which must be the key's whole MAC, or, when cut, its first
// octets.
func (k *Key) verify(msg []byte, t *dns.TSIG, cut bool) error {
	want, err := k.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if cut && err == nil && len(got) > 0 && len(got) < len(want) {
		want = want[:len(got)]
	}
	if err != nil || !hmac.Equal(got, want) {
		return dns.ErrSig
	}
	return nil
}

// Size is the length in octets of the key's MAC, its algorithm's output.
func (k *Key) Size() int { return k.hash().Size() }

// Truncated verifies as its key does, but a MAC cut to its first octets verifies when they are
// the key's (RFC 8945 §5.2.2.1, rule 4): a server tells such a request, shorter than its policy
// allows, from a forged one. It checks no length: the caller has refused a MAC the RFC does not
// allow.
type Truncated struct{ *Key }

// Verify checks t's MAC, whatever its length up to the whole, over msg.
func (k Truncated) Verify(msg []byte, t *dns.TSIG) error {
	return k.verify(msg, t, true)
}

// RcodeError is the error code a peer answered with, and the error of its TSIG record, if any.
type RcodeError struct {
	Rcode int
	TSIG  uint16
}

// AnswerError is the error code r answered with.
func AnswerError(r *dns.Msg) RcodeError {
	e := RcodeError{Rcode: r.Rcode}
	if t := r.IsTsig(); t != nil {
		e.TSIG = t.Error
	}
	return e
}

func (e RcodeError) Error() string {
	if e.TSIG != dns.RcodeSuccess {
		return "answered " + dns.RcodeToString[e.Rcode] + ", TSIG error " + dns.RcodeToString[int(e.TSIG)]
	}
	return "answered " + dns.RcodeToString[e.Rcode]
}
