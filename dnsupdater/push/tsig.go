package push

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"

	"github.com/miekg/dns"
)

// tsigKey signs and verifies with one TSIG key, matching its name whatever its letters' case.
// A name is compared without regard to case in DNS (RFC 4343), and a primary signs its answer
// with its own spelling of the key's name: the client's own provider looks the name up exactly,
// so an answer from a primary that spells it otherwise failed to verify, and every update it
// applied read as a failed push.
type tsigKey struct {
	name   string
	secret []byte
}

// newTSIGKey returns the key name (a fully qualified name) with its base64 secret.
func newTSIGKey(name, secret string) (*tsigKey, error) {
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return nil, err
	}
	return &tsigKey{name: dns.Fqdn(name), secret: raw}, nil
}

// Generate returns the MAC of msg, signed as t says.
func (k *tsigKey) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if !strings.EqualFold(t.Hdr.Name, k.name) {
		return nil, dns.ErrSecret
	}
	var h func() hash.Hash
	switch dns.CanonicalName(t.Algorithm) {
	case dns.HmacSHA1:
		h = sha1.New
	case dns.HmacSHA256:
		h = sha256.New
	case dns.HmacSHA384:
		h = sha512.New384
	case dns.HmacSHA512:
		h = sha512.New
	default:
		return nil, dns.ErrKeyAlg
	}
	m := hmac.New(h, k.secret)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Verify checks t's MAC over msg.
func (k *tsigKey) Verify(msg []byte, t *dns.TSIG) error {
	want, err := k.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil || !hmac.Equal(got, want) {
		return dns.ErrSig
	}
	return nil
}
