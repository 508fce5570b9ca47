package up

import (
	"bytes"
	"context"
	"errors"
	"os"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fileCheckEvery is how often the configuration file is looked at for a change.
const fileCheckEvery = 500 * time.Millisecond

// watchFile applies the configuration file at path as a new version each time its content
// changes, and when reload delivers (SIGHUP), until ctx ends. A change is applied once two
// looks half a second apart read the same content, so a file caught half-written is not
// refused for it. A file that does not parse is refused whole: every problem is logged and
// nothing is applied.
func watchFile(ctx context.Context, js jetstream.JetStream, path string, applied []byte, reload <-chan struct{}, log zerolog.Logger) {
	log = log.With().Str("component", "config-file").Str("file", path).Logger()
	t := time.NewTicker(fileCheckEvery)
	defer t.Stop()
	last, seen := applied, applied
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-reload:
			forced = true
		}
		doc, err := os.ReadFile(path)
		if err != nil {
			if forced {
				log.Error().Err(err).Msg("configuration file not read; nothing applied")
			}
			continue
		}
		if bytes.Equal(doc, last) {
			if forced {
				log.Info().Msg("configuration file unchanged")
			}
			continue
		}
		if !forced && !bytes.Equal(doc, seen) {
			seen = doc // still being written, perhaps: look again
			continue
		}
		last, seen = doc, doc
		// Its streams' bounds (streams.probes, and the check rate the default follows) too, as
		// `detour apply` sets them: first, so that bounds JetStream refuses apply nothing.
		cfg, err := config.Parse(path, doc)
		if err == nil {
			if err := events.EnsureStreams(ctx, js, cfg.StreamOptions(1)); err != nil {
				log.Error().Err(err).Msg("configuration file refused: its streams' bounds were not taken; nothing applied")
				continue
			}
		}
		_, v, err := config.Apply(ctx, js, path, doc, config.ApplyOptions{By: "detour-up", Message: "changed " + path})
		var ce *config.Error
		switch {
		case errors.As(err, &ce):
			log.Error().Strs("problems", ce.Problems).Msg("configuration file refused; nothing applied")
		case err != nil:
			last = nil // try again at the next look
			log.Error().Err(err).Msg("configuration file not applied")
		default:
			log.Info().Uint64("version", v.Number).Msg("configuration file applied")
			if err := events.ReportProbeBounds(ctx, js, cfg.ProbeRate(), log); err != nil {
				log.Warn().Err(err).Msg("probe results stream bounds not read")
			}
		}
	}
}
