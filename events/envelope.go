package events

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Envelope wraps every event Detour publishes. It is JSON so that `nats stream view` and
// `nats sub` show it as it is.
type Envelope struct {
	// Type names the fact and its version, e.g. "detour.endpoint.down.v1".
	Type string `json:"type"`
	// ID is a UUID (v7 for new facts, v5 for derived ones, v8 for those derived under an
	// IDKey); it is also sent as Nats-Msg-Id.
	ID string `json:"id"`
	// Time is when the fact happened, in UTC.
	Time time.Time `json:"time"`
	// Source names the worker that recorded the fact, e.g. "prober/us-west/p1".
	Source string `json:"source"`
	// Cause is the id of the event that caused this one, for derived events.
	Cause string `json:"cause,omitempty"`
	// Data is the typed payload; see the Type* constants for which struct it holds.
	Data json.RawMessage `json:"data"`
}

// ErrMalformed is wrapped by every decoding error, so shells can count and terminate such
// messages instead of retrying them.
var ErrMalformed = errors.New("malformed event")

// New builds an envelope with a fresh time-ordered id. It fails only if data cannot be encoded.
func New(typ, source string, at time.Time, data any) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	raw, err := payload(typ, data)
	if err != nil {
		return Envelope{}, err
	}
	return build(typ, id.String(), source, "", at, raw), nil
}

// Derived builds an envelope for a fact caused by another event. Its id is a function of the
// cause and key, so a redelivered cause yields the same id and JetStream drops the duplicate.
func Derived(typ, source, cause, key string, at time.Time, data any) (Envelope, error) {
	raw, err := payload(typ, data)
	if err != nil {
		return Envelope{}, err
	}
	return build(typ, DerivedID(cause, typ+"|"+key), source, cause, at, raw), nil
}

// IDKey is one writer's secret for the ids of its derived events, where writers of other
// identities share the stream. JetStream drops a message whose Nats-Msg-Id it stored within the
// stream's duplicate window, whatever its subject: an id every writer can compute (Derived's)
// lets another identity store it first, on a subject of its own, and have the writer's event
// dropped as a duplicate. An id derived under a key that only the writer holds is as stable
// (one cause and key give one id, so a retried or redelivered publish is still a duplicate),
// and no other writer can predict it.
type IDKey struct{ secret [32]byte }

// NewIDKey returns a random key.
func NewIDKey() IDKey {
	var k IDKey
	rand.Read(k.secret[:]) // never fails
	return k
}

// Derived is Derived with an id derived under k.
func (k IDKey) Derived(typ, source, cause, key string, at time.Time, data any) (Envelope, error) {
	raw, err := payload(typ, data)
	if err != nil {
		return Envelope{}, err
	}
	return k.DerivedJSON(typ, source, cause, key, at, raw), nil
}

// DerivedJSON is Derived, with an id derived under k, for a payload its caller has already
// encoded (valid JSON), so a payload measured before it is sent is not encoded twice.
func (k IDKey) DerivedJSON(typ, source, cause, key string, at time.Time, data json.RawMessage) Envelope {
	return build(typ, k.derivedID(cause, typ+"|"+key), source, cause, at, data)
}

// Derives reports whether k derived e's id, as DerivedJSON does for e's type, source and cause,
// and key: whether e is one of k's writer's events.
func (k IDKey) Derives(e Envelope, key string) bool {
	return e.ID == k.derivedID(e.Cause, e.Type+"|"+key)
}

// derivedID is the id, under k, of the event of the given key caused by cause.
func (k IDKey) derivedID(cause, key string) string {
	return uuid.NewHash(hmac.New(sha256.New, k.secret[:]), uuid.NameSpaceOID, []byte(cause+"|"+key), 8).String()
}

// DerivedID is the deterministic id of the event of the given key caused by cause.
func DerivedID(cause, key string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(cause+"|"+key)).String()
}

// payload encodes an event's data.
func payload(typ string, data any) (json.RawMessage, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", typ, err)
	}
	return raw, nil
}

func build(typ, id, source, cause string, at time.Time, data json.RawMessage) Envelope {
	return Envelope{Type: typ, ID: id, Time: at.UTC(), Source: source, Cause: cause, Data: data}
}

// Encode returns the envelope's JSON form.
func (e Envelope) Encode() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		// Every field is a plain value or already-valid JSON: this cannot fail.
		panic(fmt.Sprintf("encode envelope: %v", err))
	}
	return b
}

// Decode parses and checks an envelope. Errors wrap ErrMalformed.
func Decode(b []byte) (Envelope, error) {
	e, ok := decodeEnvelopeFast(b)
	if !ok {
		if err := json.Unmarshal(b, &e); err != nil {
			return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	switch {
	case e.Type == "":
		return Envelope{}, fmt.Errorf("%w: type: missing", ErrMalformed)
	case !strings.HasPrefix(e.Type, "detour."):
		return Envelope{}, fmt.Errorf("%w: type: %q is not a detour event", ErrMalformed, e.Type)
	case e.ID == "":
		return Envelope{}, fmt.Errorf("%w: id: missing", ErrMalformed)
	case e.Time.IsZero():
		return Envelope{}, fmt.Errorf("%w: time: missing", ErrMalformed)
	case len(e.Data) == 0:
		return Envelope{}, fmt.Errorf("%w: data: missing", ErrMalformed)
	}
	return e, nil
}

// Payload decodes the envelope's data into v, which must be the payload type its Type names.
func (e Envelope) Payload(v any) error {
	if err := json.Unmarshal(upcast(e.Type, e.Data), v); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrMalformed, e.Type, err)
	}
	return nil
}

// upcast turns an older payload version into the current one. It is the single place where old
// versions are translated; today every type is at v1.
func upcast(_ string, data json.RawMessage) json.RawMessage { return data }
