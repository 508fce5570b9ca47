package up

import (
	"bytes"
	"context"
	"errors"
	"os"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/config"
	"github.com/detourdev/detour/services/configfile"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// fileCheckEvery is how often the configuration file is looked at for a change.
const fileCheckEvery = 500 * time.Millisecond

// retryAtMost is the longest wait before a file version that NATS could not take (no answer, a
// stream electing its leader, JetStream unavailable) is tried again; the wait doubles from
// fileCheckEvery up to it.
const retryAtMost = 30 * time.Second

// applyTimeout bounds one attempt to apply a file version, so that a request nobody answers
// fails and is retried rather than holding the watcher.
const applyTimeout = 10 * time.Second

// refused tells a refusal with a reason (a bound JetStream cannot reserve, a definition it
// rejects, a document larger than the server's max_payload), which only a change to the file
// will change, from a failure to be reached or answered: no responders, a timeout, a cluster
// that is electing or short of nodes (events.Busy), what JetStream refuses until an operator
// acts on the servers (events.UntilOperator: JetStream off for the account, a stream offline
// until its servers are upgraded, as for a moment in a rolling upgrade), or any other answer
// of status 503 (a server out of storage). The API answers the last two 502, so that its client
// stops; the watcher has no one to tell, and applies the file once an operator has fixed the
// servers.
func refused(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code != 503 && !events.Busy(err) && !events.UntilOperator(err)
	}
	return errors.Is(err, nats.ErrMaxPayload)
}

// watchFile applies the configuration file at path as a new version each time its content
// changes, and when reload delivers (SIGHUP), until ctx ends. A change is applied once two
// looks half a second apart read the same content, so a file caught half-written is not
// refused for it. A file that does not parse is refused whole: every problem is logged and
// nothing is applied. A version NATS could not take is tried again, with a growing wait, until
// it is applied or the file changes: a change made while a stream elects its leader is not lost.
// A reload applies the file as it is, even unchanged: after a refusal whose cause was outside
// the file (a bound JetStream could not reserve then), or after `detour apply` made another
// version active.
func watchFile(ctx context.Context, js jetstream.JetStream, path string, dirs config.CredentialDirs, applied []byte, reload <-chan struct{}, log zerolog.Logger) {
	log = log.With().Str("component", "config-file").Str("file", path).Logger()
	t := time.NewTicker(fileCheckEvery)
	defer t.Stop()
	last, seen := applied, applied
	var retryAt time.Time // when the version NATS could not take is tried again
	wait := fileCheckEvery
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
		if !forced {
			if bytes.Equal(doc, last) {
				continue
			}
			if !bytes.Equal(doc, seen) {
				seen, retryAt, wait = doc, time.Time{}, fileCheckEvery // still being written, perhaps: look again
				continue
			}
			if time.Now().Before(retryAt) {
				continue
			}
		}
		last, seen, retryAt = doc, doc, time.Time{}
		outcome, err := applyFile(ctx, js, path, dirs, doc, log)
		switch {
		case err != nil && ctx.Err() != nil:
			return // stopping cut the attempt short: nothing failed
		case err != nil:
			last, retryAt = nil, time.Now().Add(wait)
			log.Error().Err(err).Dur("retry_in", wait).Msg("configuration file not applied: NATS did not take it; trying again")
			wait = min(2*wait, retryAtMost)
			continue
		case outcome == fileActive && forced:
			log.Info().Msg("configuration file unchanged: it is the active version")
		}
		wait = fileCheckEvery
	}
}

// fileOutcome is what became of a file version NATS answered about.
type fileOutcome int

const (
	fileApplied fileOutcome = iota // stored as the new active version
	fileActive                     // the active version already
	fileRefused                    // refused for what it says, or for bounds JetStream would not take; logged
)

// applyFile applies doc, read from path, as a new version: its streams' bounds first, as
// `detour apply` sets them, so that bounds JetStream refuses apply nothing. A document refused
// for what it says is logged with every problem and is not an error; the error is a failure to
// reach NATS or to be answered, worth trying again.
func applyFile(ctx context.Context, js jetstream.JetStream, path string, dirs config.CredentialDirs, doc []byte, log zerolog.Logger) (fileOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	switch _, same, err := config.Unchanged(ctx, js, doc); { // without CONFIG, nothing is active: EnsureStreams makes it again
	case err != nil:
		return 0, err
	case same:
		return fileActive, nil // taken already: by an attempt whose answer was lost, or by `detour apply`
	}
	// Checked as detour check and detour up's start check it: the same problems, located.
	cfg, err := configfile.Check(path, doc)
	if err == nil {
		err = configfile.CheckSecrets(path, doc, cfg, dirs)
	}
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		log.Error().Strs("problems", ce.Located()).Msg("configuration file refused; nothing applied")
		return fileRefused, nil
	case err != nil:
		log.Error().Err(err).Msg("configuration file refused; nothing applied")
		return fileRefused, nil
	}
	ao := config.ApplyOptions{By: "detour-up", Message: "changed " + path}
	if err := config.Fits(js.Conn(), path, doc, ao); err != nil {
		log.Error().Err(err).Msg("configuration file refused by JetStream; nothing applied")
		return fileRefused, nil
	}
	switch err := events.EnsureStreams(ctx, js, cfg.StreamOptions(1)); {
	case err != nil && refused(err):
		log.Error().Err(err).Msg("configuration file refused: its streams' bounds were not taken; nothing applied")
		return fileRefused, nil
	case err != nil:
		return 0, err
	}
	_, v, err := config.Apply(ctx, js, path, doc, ao)
	switch {
	case errors.As(err, &ce):
		log.Error().Strs("problems", ce.Located()).Msg("configuration file refused; nothing applied")
		return fileRefused, nil
	case err != nil && refused(err):
		log.Error().Err(err).Msg("configuration file refused by JetStream; nothing applied")
		return fileRefused, nil
	case err != nil:
		return 0, err
	}
	log.Info().Uint64("version", v.Number).Msg("configuration file applied")
	for _, w := range configfile.Warnings(path, doc, cfg) {
		log.Warn().Str("problem", w).Msg("configuration valid but probably not meant")
	}
	if err := events.ReportProbeBounds(ctx, js, cfg.ProbeRate(), log); err != nil {
		log.Warn().Err(err).Msg("probe results stream bounds not read")
	}
	return fileApplied, nil
}
