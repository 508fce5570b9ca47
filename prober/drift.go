package prober

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// driftEvery is how often a worker reads the membership bucket's definition.
const driftEvery = time.Minute

// The lines watchRollups logs.
const (
	rollupsWarning = "membership bucket allows roll-ups: one region's prober credentials can purge every region's members; run detour apply from this version to refuse them"
	rollupsMended  = "membership bucket refuses roll-ups again"
)

// watchRollups warns while the membership bucket allows roll-ups, reading whether it does (read,
// allowsRollups bound to the bucket) at once and then every period until ctx ends. The bucket is made to refuse them (events.ProbersStream):
// a prober's NATS user writes every key of its own region, and a Nats-Rollup: all header on one
// of them would purge every region's records. A bucket made by an earlier version allows them,
// and so does an earlier version's `detour apply` run during a rolling upgrade; no role changes
// the bucket, so the worker says so (once, and once more when it is mended) and goes on probing.
// A definition that cannot be read (JetStream away) says nothing either way.
func watchRollups(ctx context.Context, read func(context.Context) (allowed, ok bool), period time.Duration, log zerolog.Logger) {
	allowed := false
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now, ok := read(ctx); ok && now != allowed {
			allowed = now
			if allowed {
				log.Warn().Str("bucket", MembersBucket).Msg(rollupsWarning)
			} else {
				log.Info().Str("bucket", MembersBucket).Msg(rollupsMended)
			}
		}
		t.Reset(period)
	}
}

// allowsRollups reads whether the bucket's stream allows roll-ups; ok is false when its
// definition could not be read.
func allowsRollups(ctx context.Context, kv jetstream.KeyValue) (allowed, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return false, false
	}
	bs, isBucket := st.(*jetstream.KeyValueBucketStatus)
	if !isBucket || bs.StreamInfo() == nil {
		return false, false
	}
	return bs.StreamInfo().Config.AllowRollup, true
}
