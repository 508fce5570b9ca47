package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Rejected says that a role could not apply a configuration version and keeps the last good one.
type Rejected struct {
	Version  uint64   `json:"version"`
	Role     string   `json:"role"`
	Problems []string `json:"problems"`
}

// RejectedSubject holds the rejections of the role named by tokens, e.g. "prober", "us-west",
// "p1": detour.config.rejected.prober.us-west.p1. A character that may not stand in a subject
// token becomes '_'.
func RejectedSubject(role ...string) string {
	parts := make([]string, len(role))
	for i, r := range role {
		b := []byte(r)
		for j, c := range b {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				b[j] = '_'
			}
		}
		if len(b) == 0 {
			b = []byte("_")
		}
		parts[i] = string(b)
	}
	return "detour.config.rejected." + strings.Join(parts, ".")
}

// Watch delivers every configuration version applied after version after, parsed, until ctx
// ends. A version that does not parse is not delivered: it is recorded as a
// detour.config.rejected.v1 event on RejectedSubject(role...) naming every problem, and the role
// keeps what it runs. The channel holds at most one version: a newer one replaces one not taken
// yet. It follows CONFIG through an events.Follower, so it survives the loss of any JetStream
// node and a full outage, and reads by direct gets (events.BridgeNext) while it has no
// consumer: a consumer JetStream places on a hung node does not hold a new version back.
func Watch(ctx context.Context, js jetstream.JetStream, after uint64, log zerolog.Logger, role ...string) <-chan *Config {
	out := make(chan *Config, 1)
	f := events.Follower{JS: js, Stream: events.StreamConfig, Log: log, Reader: "config", Bridge: events.BridgeNext, Start: jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.SubjectConfigDoc}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq: after + 1}}
	go f.Run(ctx, func(d events.Delivery) {
		if d.Msg == nil {
			return
		}
		v, err := versionOf(d.Seq, d.Data)
		var c *Config
		if err == nil {
			c, err = v.Config()
		}
		if err != nil {
			Reject(ctx, js, d.Seq, err, log, role...)
			return
		}
		c.Event, c.Stored = v.Event, d.Stamp
		select {
		case <-out:
		default:
		}
		out <- c
		log.Info().Uint64("version", v.Number).Str("by", v.By).Msg("configuration version received")
	})
	return out
}

// rejectIDs derives the ids of this process's rejections: the watches of one process (the
// controller runs several) that reject one version record it once, and no other identity
// writing REJECTIONS can compute the id (see events.IDKey) and store it first, hiding the
// rejection.
var rejectIDs = events.NewIDKey()

// Reject records, as a detour.config.rejected.v1 event on RejectedSubject(role...) in the stream
// REJECTIONS, that the role could not apply version because of err, and logs it. Watch calls it
// for a version that does not parse; a role calls it for one it cannot apply itself (an edge
// whose listener cannot bind). The event lists the problems that fit in
// events.MaxRejectionMessage, and how many more there were; the log line lists them all.
// A role restarted reads again the versions after its last good one: a rejection that is
// already the last on its subject is not recorded again.
func Reject(ctx context.Context, js jetstream.JetStream, version uint64, err error, log zerolog.Logger, role ...string) {
	name := strings.Join(role, "/")
	subject := RejectedSubject(role...)
	r := Rejected{Version: version, Role: name}
	var ce *Error
	if errors.As(err, &ce) {
		r.Problems = ce.Problems
	} else {
		r.Problems = []string{err.Error()}
	}
	log.Error().Uint64("version", version).Strs("problems", r.Problems).Msg("configuration version rejected; keeping the last good one")
	r.Problems = fitProblems(r.Problems, rejectionProblemBytes)
	if rejectedLast(ctx, js, subject, version) {
		return
	}
	e, err := rejectIDs.Derived(events.TypeConfigRejected, name, fmt.Sprintf("config-%d", version), name, time.Now(), r)
	if err == nil {
		_, err = events.Publish(ctx, js, subject, e)
	}
	if err != nil {
		log.Warn().Err(err).Uint64("version", version).Msg("configuration rejection not recorded")
	}
}

// rejectionProblemBytes is how much of events.MaxRejectionMessage a rejection's problems may take:
// the rest holds the envelope and the headers.
const rejectionProblemBytes = events.MaxRejectionMessage - 4<<10

// fitProblems returns the first problems that take at most limit bytes in JSON, and a last one
// telling how many more there were. A first problem longer than that is cut.
func fitProblems(problems []string, limit int) []string {
	used := 0
	for i, p := range problems {
		b, _ := json.Marshal(p)
		if used+len(b)+1 <= limit {
			used += len(b) + 1
			continue
		}
		kept := problems[:i:i]
		if i == 0 {
			// A byte takes at most 6 in JSON (\u00XX): the cut problem fits.
			kept, i = []string{strings.ToValidUTF8(p[:min(len(p), limit/6)], "") + "…"}, 1
		}
		if more := len(problems) - i; more > 0 {
			kept = append(kept, fmt.Sprintf("and %d more", more))
		}
		return kept
	}
	return problems
}

// rejectedLast reports whether the last event on subject rejects version. Only the last is read
// (a role may read only the last of its own subject of REJECTIONS): a restart that rejects two versions again
// records both again. A read that fails says no: a rejection recorded twice beats none.
func rejectedLast(ctx context.Context, js jetstream.JetStream, subject string, version uint64) bool {
	st, err := js.Stream(ctx, events.StreamRejections)
	if err != nil {
		return false
	}
	e, _, ok, err := events.Last(ctx, st, subject)
	var r Rejected
	return err == nil && ok && e.Type == events.TypeConfigRejected && e.Payload(&r) == nil && r.Version == version
}
