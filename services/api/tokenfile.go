package api

import (
	"bytes"
	"context"
	"os"
	"time"
)

// tokensCheckEvery is how often the API looks at its tokens file for a change; a change is
// served once two looks agree, so within two of these.
const tokensCheckEvery = 500 * time.Millisecond

// followTokens serves what the tokens file at path holds each time it changes from served, until
// ctx ends: a token removed from it is refused, one added taken, without a restart. A change is
// taken once two looks tokensCheckEvery apart read the same content, so that a file caught
// half-written (an editor writing it over in place) is neither served nor logged as broken. A
// file that cannot be read or does not parse leaves the tokens as they were, and is logged once:
// a read error until the file is read again, a content until it changes.
func (s *Server) followTokens(ctx context.Context, path string, served []byte) {
	log := s.log.With().Str("file", path).Logger()
	t := time.NewTicker(tokensCheckEvery)
	defer t.Stop()
	last, seen := served, served
	unread := "" // the read error logged last
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		doc, err := os.ReadFile(path)
		if err != nil {
			if err.Error() != unread {
				unread = err.Error()
				log.Error().Err(err).Msg("tokens file not read: the api keeps the tokens it had")
			}
			continue
		}
		unread = ""
		if bytes.Equal(doc, last) {
			continue
		}
		if !bytes.Equal(doc, seen) {
			seen = doc // still being written, perhaps: look again
			continue
		}
		last = doc
		toks, err := ParseTokens(doc)
		if err != nil {
			log.Error().Err(err).Msg("tokens file refused: the api keeps the tokens it had")
			continue
		}
		s.tokens.Store(toks)
		log.Info().Int("tokens", toks.Len()).Msg("tokens file read again")
	}
}
