package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Version is one applied configuration. Its Number is the CONFIG stream sequence that stores
// it, so versions grow with every apply and `--expect-version` compares against the last one.
type Version struct {
	Number  uint64    `json:"version"`
	Time    time.Time `json:"time"`
	By      string    `json:"by"`
	Message string    `json:"message,omitempty"`
	SHA256  string    `json:"sha256"`
	// Document is the YAML text as it was applied.
	Document string `json:"document,omitempty"`
	// Event is the id of the detour.config.applied.v1 event that stored it.
	Event string `json:"-"`
}

// ErrVersionConflict is wrapped when `--expect-version` names a version that is no longer the
// active one: someone applied in between.
var ErrVersionConflict = errors.New("the active configuration changed since that version")

// ErrNoVersion is wrapped when the CONFIG stream holds no such version.
var ErrNoVersion = errors.New("no such configuration version")

// ApplyOptions say who applies a document, why, and against which version.
type ApplyOptions struct {
	// By names who applies it, e.g. user@host.
	By string
	// Message says why. Optional.
	Message string
	// Expect, when set, refuses the apply unless the active version is *Expect (0: none yet).
	Expect *uint64
}

// Apply validates doc and, if it is valid, stores it as the new active version. An invalid
// document is refused whole (a *Error) and nothing is stored; a stale Expect yields an error
// wrapping ErrVersionConflict that names the version now active.
func Apply(ctx context.Context, js jetstream.JetStream, name string, doc []byte, o ApplyOptions) (*Config, Version, error) {
	c, err := Parse(name, doc)
	if err != nil {
		return nil, Version{}, err
	}
	v, e, err := newVersion(doc, o)
	if err != nil {
		return nil, Version{}, err
	}
	var ack *jetstream.PubAck
	if o.Expect == nil {
		ack, err = events.Publish(ctx, js, events.SubjectConfigDoc, e)
	} else {
		ack, err = events.Append(ctx, js, events.SubjectConfigDoc, e, *o.Expect)
		if errors.Is(err, events.ErrConflict) {
			return nil, Version{}, conflict(ctx, js, name, *o.Expect)
		}
	}
	if err != nil {
		return nil, Version{}, err
	}
	v.Number, v.Event = ack.Sequence, e.ID
	return c, v, nil
}

// newVersion is the version of doc that Apply stores, and the event that stores it.
func newVersion(doc []byte, o ApplyOptions) (Version, events.Envelope, error) {
	sum := sha256.Sum256(doc)
	v := Version{Time: time.Now().UTC(), By: o.By, Message: o.Message, SHA256: hex.EncodeToString(sum[:]), Document: string(doc)}
	e, err := events.New(events.TypeConfigApplied, o.By, v.Time, events.ConfigApplied{
		Document: v.Document, SHA256: v.SHA256, By: o.By, Message: o.Message,
	})
	return v, e, err
}

// headersAtMost bounds the headers a version is stored with (its type, message id and expected
// subject sequence, 161 bytes at most), which count against the server's max_payload too.
const headersAtMost = 256

// Fits returns an error wrapping nats.ErrMaxPayload when the version Apply would store for doc
// is larger than nc's server takes (its max_payload, 1 MB by default). A caller that bounds the
// streams before it applies checks first, so that a version refused for its size changes nothing.
func Fits(nc *nats.Conn, name string, doc []byte, o ApplyOptions) error {
	_, e, err := newVersion(doc, o)
	if err != nil {
		return err
	}
	if n := int64(len(e.Encode()) + headersAtMost); n > nc.MaxPayload() {
		return fmt.Errorf("apply %s: %w: the version takes %d bytes, the server %d at most", name, nats.ErrMaxPayload, n, nc.MaxPayload())
	}
	return nil
}

// CheckExpect returns the error Apply would for a stale expect (wrapping ErrVersionConflict),
// or nil while version expect (0: none yet) is the active one: a caller that does more than
// store the document (detour apply bounds the streams) checks first, then applies with Expect.
func CheckExpect(ctx context.Context, js jetstream.JetStream, name string, expect uint64) error {
	active, err := LeaderActive(ctx, js)
	switch {
	case errors.Is(err, ErrNoVersion):
		active.Number = 0
	case err != nil:
		return err
	}
	if active.Number != expect {
		return conflict(ctx, js, name, expect)
	}
	return nil
}

// conflict is the error of an apply that expected version expect, naming the version active.
func conflict(ctx context.Context, js jetstream.JetStream, name string, expect uint64) error {
	active, err := LeaderActive(ctx, js)
	if err != nil {
		return fmt.Errorf("apply %s: %w: expected version %d", name, ErrVersionConflict, expect)
	}
	return fmt.Errorf("apply %s: %w: expected version %d, but version %d is active (applied %s by %s): plan again",
		name, ErrVersionConflict, expect, active.Number, active.Time.Format(time.RFC3339), active.By)
}

// Active returns the active version; it wraps ErrNoVersion when nothing was applied yet. It is
// read as the first of CONFIG's replicas to answer holds it (events.AnyLast): a role starts on
// it, and one replica that hangs, even CONFIG's leader, does not hold its start. A replica behind
// the leader answers with an older version, which a role's configuration watch follows with
// the versions after it; what decides a write reads LeaderActive.
func Active(ctx context.Context, js jetstream.JetStream) (Version, error) {
	e, seq, ok, err := events.AnyLast(ctx, js, events.StreamConfig, events.SubjectConfigDoc)
	if errors.Is(err, nats.ErrNoResponders) {
		// No replica took the read: the stream's information tells whether CONFIG exists
		// (jetstream.ErrStreamNotFound: nothing is active, `detour up` makes it again).
		if _, serr := js.Stream(ctx, events.StreamConfig); serr != nil {
			return Version{}, fmt.Errorf("open stream %s: %w", events.StreamConfig, serr)
		}
	}
	return activeOf(e, seq, ok, err)
}

// LeaderActive returns the active version as CONFIG's leader holds it (events.LeaderLast); it
// wraps ErrNoVersion when nothing was applied yet. An apply checking --expect-version, its
// conflict's message and a plan read it so: a replica behind the leader, which Active may read,
// holds an older version, and an apply expecting the active one was refused as stale while one
// expecting the older passed the check, had the streams' bounds updated, and was then refused.
func LeaderActive(ctx context.Context, js jetstream.JetStream) (Version, error) {
	e, seq, ok, err := events.LeaderLast(ctx, js, events.StreamConfig, events.SubjectConfigDoc)
	return activeOf(e, seq, ok, err)
}

// activeOf is the version a read of the last event on SubjectConfigDoc returned.
func activeOf(e events.Envelope, seq uint64, ok bool, err error) (Version, error) {
	switch {
	case err != nil && ok:
		return Version{}, fmt.Errorf("read configuration version %d: %w", seq, err)
	case err != nil:
		return Version{}, fmt.Errorf("read the active configuration: %w", err)
	case !ok:
		return Version{}, fmt.Errorf("no configuration on %s yet: run `detour apply FILE`: %w", events.SubjectConfigDoc, ErrNoVersion)
	}
	return versionOfEvent(seq, e)
}

// NewestParsed returns the newest version before version before whose document this binary
// parses, and its configuration: what a role starts on when the active version is one it cannot
// parse (a newer `detour apply` wrote a field it does not know), as its running peers keep the
// last good one. It reads back one version at a time from before, down to the oldest CONFIG
// keeps, and wraps ErrNoVersion when none of them parses.
func NewestParsed(ctx context.Context, js jetstream.JetStream, before uint64) (Version, *Config, error) {
	s, err := js.Stream(ctx, events.StreamConfig)
	if err != nil {
		return Version{}, nil, fmt.Errorf("open stream %s: %w", events.StreamConfig, err)
	}
	first := max(s.CachedInfo().State.FirstSeq, 1)
	for n := before - 1; n >= first && n < before; n-- {
		m, err := s.GetMsg(ctx, n)
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && m.Subject != events.SubjectConfigDoc) {
			continue
		}
		if err != nil {
			return Version{}, nil, fmt.Errorf("read configuration version %d: %w", n, err)
		}
		v, err := versionOf(m.Sequence, m.Data)
		if err != nil {
			continue
		}
		if c, err := v.Config(); err == nil {
			return v, c, nil
		}
	}
	return Version{}, nil, fmt.Errorf("no configuration version before %d parses: %w", before, ErrNoVersion)
}

// GetVersion returns the version numbered n; it wraps ErrNoVersion when the stream holds none
// (it was never a version, or it is older than the last 100 kept).
func GetVersion(ctx context.Context, js jetstream.JetStream, n uint64) (Version, error) {
	s, err := js.Stream(ctx, events.StreamConfig)
	if err != nil {
		return Version{}, fmt.Errorf("open stream %s: %w", events.StreamConfig, err)
	}
	m, err := s.GetMsg(ctx, n)
	if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && m.Subject != events.SubjectConfigDoc) {
		return Version{}, fmt.Errorf("configuration version %d: %w (see detour config history)", n, ErrNoVersion)
	}
	if err != nil {
		return Version{}, fmt.Errorf("read configuration version %d: %w", n, err)
	}
	return versionOf(m.Sequence, m.Data)
}

// History returns every version the CONFIG stream keeps, oldest first, without their documents.
// It reads them one by one by their subject (a direct get of the next version after each), with
// no consumer: a role's NATS user may have only the consumers named for it.
func History(ctx context.Context, js jetstream.JetStream) ([]Version, error) {
	last, err := Active(ctx, js)
	if errors.Is(err, ErrNoVersion) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, events.StreamConfig)
	if err != nil {
		return nil, fmt.Errorf("read configuration history: open stream %s: %w", events.StreamConfig, err)
	}
	var out []Version
	for seq := uint64(1); seq <= last.Number; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(events.SubjectConfigDoc))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read configuration history: %w", err)
		}
		v, err := versionOf(m.Sequence, m.Data)
		if err != nil {
			return nil, err
		}
		v.Document = ""
		out = append(out, v)
		seq = m.Sequence + 1
	}
	return out, nil
}

func versionOf(seq uint64, data []byte) (Version, error) {
	e, err := events.Decode(data)
	if err != nil {
		return Version{}, fmt.Errorf("read configuration version %d: %w", seq, err)
	}
	return versionOfEvent(seq, e)
}

// versionOfEvent is the version that e, stored at seq, applied.
func versionOfEvent(seq uint64, e events.Envelope) (Version, error) {
	var a events.ConfigApplied
	if err := e.Payload(&a); err != nil {
		return Version{}, fmt.Errorf("read configuration version %d: %w", seq, err)
	}
	return Version{Number: seq, Time: e.Time, By: a.By, Message: a.Message, SHA256: a.SHA256, Document: a.Document, Event: e.ID}, nil
}

// Config parses the version's document.
func (v Version) Config() (*Config, error) {
	return ParseStored(fmt.Sprintf("configuration version %d", v.Number), []byte(v.Document))
}
