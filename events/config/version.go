package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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
	// Unchanged is set on the version Apply returns when it stored nothing: the document applied
	// is this version's, byte for byte.
	Unchanged bool `json:"unchanged,omitempty"`
	// InlineSecrets tells whether Document holds a secret written inline, or a second YAML
	// document, which is not shown (Redact finds one); History sets it, as it drops the documents.
	InlineSecrets bool `json:"-"`
}

// ErrVersionConflict is wrapped when `--expect-version` names a version that is no longer the
// active one: someone applied in between.
var ErrVersionConflict = errors.New("the active configuration changed since that version")

// ErrMaybeStored is wrapped when the bound of an apply ran out after its version was sent: the
// version may have been stored. Applying the same document again stores nothing if it was.
var ErrMaybeStored = errors.New("the version was sent but its answer did not come: it may have been stored")

// maxApplyAttempts bounds how often an apply without an expected version is sent again after
// other applies were stored first.
const maxApplyAttempts = 10

// An apply refused while the active version is unchanged (another apply still being stored, its
// followers slow to acknowledge it) is sent again after a pause, from firstInFlightPause
// doubling up to maxInFlightPause, for up to maxInFlightWait in all (or its ctx's bound).
const (
	firstInFlightPause = 2 * time.Millisecond
	maxInFlightPause   = 100 * time.Millisecond
	maxInFlightWait    = 10 * time.Second
)

// ErrNoVersion is wrapped when the CONFIG stream holds no such version.
var ErrNoVersion = errors.New("no such configuration version")

// ErrNotAVersion is wrapped when a message on the configuration subject is no version (bytes
// published there by hand, an event of another type, a config.applied whose data is no
// version's); the Version returned beside it has the message's number alone.
var ErrNotAVersion = errors.New("no configuration version")

// ApplyOptions say who applies a document, why, and against which version.
type ApplyOptions struct {
	// By names who applies it, e.g. user@host.
	By string
	// Message says why. Optional.
	Message string
	// Expect, when set, refuses the apply unless the active version is *Expect (0: none yet).
	Expect *uint64
	// Force stores the document even when it is the active version's: a new version, which the
	// roles follow as any other (a controller reads a webhook's url_file again with it).
	Force bool
}

// Apply validates doc and, if it is valid, stores it as the new active version. An invalid
// document is refused whole (a *Error) and nothing is stored; a stale Expect yields an error
// wrapping ErrVersionConflict that names the version now active. A document that is the active
// version's, byte for byte, is not stored again: Apply returns that version, Unchanged, whatever
// Expect says (a retry of an apply whose answer was lost finds it so), unless Force. An error
// after the version was sent that is not JetStream's answer (unanswered) wraps ErrMaybeStored.
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
	var refusedOn *uint64 // the active version the last send was refused on top of
	stored, waited, pause := 0, time.Duration(0), firstInFlightPause
	for {
		var active Version
		var same bool
		active, same, err = Unchanged(ctx, js, doc)
		switch {
		case err != nil:
			return nil, Version{}, fmt.Errorf("apply %s: nothing applied: %w", name, err)
		case same && !o.Force:
			return c, active, nil
		case o.Expect != nil && *o.Expect != active.Number:
			return nil, Version{}, conflict(ctx, js, name, *o.Expect)
		}
		switch {
		case refusedOn == nil:
		case active.Number != *refusedOn:
			if stored++; stored == maxApplyAttempts {
				return nil, Version{}, fmt.Errorf("apply %s: nothing applied: %d other applies were stored while this one was sent", name, stored)
			}
		case waited >= maxInFlightWait:
			return nil, Version{}, fmt.Errorf("apply %s: nothing applied: another apply was still being stored after %s", name, waited)
		default:
			// Refused with the active version unchanged: another apply is still being stored
			// (JetStream refuses a send expecting the subject's last sequence while one is in
			// flight there). Sent again at once, it was refused 10 times in 8-13 ms.
			select {
			case <-ctx.Done():
				return nil, Version{}, fmt.Errorf("apply %s: nothing applied: another apply was still being stored: %w", name, ctx.Err())
			case <-time.After(pause):
			}
			waited, pause = waited+pause, min(2*pause, maxInFlightPause)
		}
		// Stored only on top of the version just read: another apply stored in between is read
		// again, and the document is then the active one (stored once), or stored on top of it
		// without --expect-version, or refused with it.
		ack, err = events.Append(ctx, js, events.SubjectConfigDoc, e, active.Number)
		if !errors.Is(err, events.ErrConflict) {
			break
		}
		// With --expect-version too: refused while another apply is in flight, the version
		// expected still active, it is refused only once the other is stored.
		refusedOn = &active.Number
	}
	if unanswered(err) {
		return nil, Version{}, fmt.Errorf("apply %s: %w: %w", name, ErrMaybeStored, err)
	}
	if err != nil {
		return nil, Version{}, err
	}
	v.Number, v.Event = ack.Sequence, e.ID
	return c, v, nil
}

// unanswered reports whether err ended the wait for the answer to a version sent: its bound ran
// out, or the connection closed or broke (a process shutting down closes it) before the answer
// came. JetStream may have stored the version.
func unanswered(err error) bool {
	for _, e := range []error{context.DeadlineExceeded, context.Canceled, nats.ErrTimeout, nats.ErrConnectionClosed, nats.ErrDisconnected} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Unchanged reads the active version from CONFIG's leader and reports whether its document is
// doc, byte for byte: what Apply would store is then stored already. Without a version (or
// without CONFIG) it returns version 0 and false. A last message that is no version (published
// on the subject by hand) is returned as a version of its sequence without a document, so that
// an apply stores on top of it: refused, the operator could put no version over it.
func Unchanged(ctx context.Context, js jetstream.JetStream, doc []byte) (Version, bool, error) {
	active, err := activeOf(events.LeaderLast(ctx, js, events.StreamConfig, events.SubjectConfigDoc))
	if errors.Is(err, ErrNotAVersion) {
		return active, false, nil
	}
	switch {
	case errors.Is(err, ErrNoVersion) || errors.Is(err, jetstream.ErrStreamNotFound):
		return Version{}, false, nil
	case err != nil:
		return Version{}, false, err
	}
	active.Unchanged = active.Document == string(doc)
	return active, active.Unchanged, nil
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
	case errors.Is(err, ErrNotAVersion):
		// A message that is no version: Apply stores on top of it when it is the one expected.
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
	if errors.Is(err, ErrNotAVersion) {
		return fmt.Errorf("apply %s: %w: expected version %d, but the last message on %s is %d, which is no version (published there by hand?): apply without --expect-version to store over it",
			name, ErrVersionConflict, expect, events.SubjectConfigDoc, active.Number)
	}
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

// activeOf is the version a read of the last event on SubjectConfigDoc returned. A last message
// read that is no version (ErrNotAVersion) is returned with its number alone, beside the
// error: a role starts on the newest version before it.
func activeOf(e events.Envelope, seq uint64, ok bool, err error) (Version, error) {
	switch {
	case err != nil && ok:
		return Version{Number: seq}, fmt.Errorf("the last message on %s, %d, is no version (published there by hand?): the roles keep the version before it, if any, and detour apply stores a version over it: %w: %w",
			events.SubjectConfigDoc, seq, ErrNotAVersion, err)
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

// History returns every version the CONFIG stream keeps, oldest first, without their documents,
// each with InlineSecrets telling whether its document holds a secret written inline. It reads
// them with batched direct gets (events.AnyAll), one round trip for up to 256 versions, from
// whichever replica answers first, with no consumer: a role's NATS user may have only the
// consumers named for it. It read them one version a round trip, and the API read each again to
// tell its secrets: a cluster answering a second late took over 20 s for 12 versions. A message
// on the subject that is no version (published there by hand) is left out: one such message
// made the whole history unreadable.
func History(ctx context.Context, js jetstream.JetStream) ([]Version, error) {
	ms, err := events.AnyAll(ctx, js, events.StreamConfig, events.SubjectConfigDoc)
	if errors.Is(err, nats.ErrNoResponders) {
		// No replica took the read: the stream's information tells whether CONFIG exists.
		if _, serr := js.Stream(ctx, events.StreamConfig); serr != nil {
			return nil, fmt.Errorf("read configuration history: open stream %s: %w", events.StreamConfig, serr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration history: %w", err)
	}
	var out []Version
	for _, m := range ms {
		v, err := versionOf(m.Sequence, m.Data)
		if errors.Is(err, ErrNotAVersion) {
			continue // no version: published on the subject by hand, refused by every role
		}
		if err != nil {
			return nil, err
		}
		_, fields := Redact([]byte(v.Document))
		v.InlineSecrets, v.Document = len(fields) > 0, ""
		out = append(out, v)
	}
	return out, nil
}

func versionOf(seq uint64, data []byte) (Version, error) {
	e, err := events.Decode(data)
	if err != nil {
		return Version{Number: seq}, fmt.Errorf("read configuration version %d: %w: %w", seq, ErrNotAVersion, err)
	}
	return versionOfEvent(seq, e)
}

// versionOfEvent is the version that e, stored at seq, applied. An event of another type, or
// one whose data is no version's (published on the subject by hand), is no version: the error
// wraps ErrNotAVersion and the version returned has its number alone (see activeOf).
func versionOfEvent(seq uint64, e events.Envelope) (Version, error) {
	if !strings.HasPrefix(e.Type, configAppliedType) {
		return Version{Number: seq}, fmt.Errorf("read configuration version %d: a %s is %w: %w", seq, e.Type, ErrNotAVersion, events.ErrMalformed)
	}
	var a events.ConfigApplied
	if err := e.Payload(&a); err != nil {
		return Version{Number: seq}, fmt.Errorf("read configuration version %d: %w: %w", seq, ErrNotAVersion, err)
	}
	return Version{Number: seq, Time: e.Time, By: a.By, Message: a.Message, SHA256: a.SHA256, Document: a.Document, Event: e.ID}, nil
}

// configAppliedType is the type of the events that store a version, of any version of the
// event (events.TypeConfigApplied less its "v1").
var configAppliedType = strings.TrimSuffix(events.TypeConfigApplied, "v1")

// Config parses the version's document, and returns it with Version set to the version's number
// and Applied to its time.
func (v Version) Config() (*Config, error) {
	c, err := ParseStored(fmt.Sprintf("configuration version %d", v.Number), []byte(v.Document))
	if err != nil {
		return nil, err
	}
	c.Version, c.Applied = v.Number, v.Time
	return c, nil
}
