package api

import (
	"bytes"
	"context"
	"os"
	"time"
)

// tokensCheckEvery is how often the API looks at its tokens file for a change; a change is
// served once two looks in a row agree, so within two of these.
const tokensCheckEvery = 500 * time.Millisecond

// followTokens serves what the tokens file at path holds each time it changes from served, until
// ctx ends: a token removed from it is refused, one added taken, without a restart. A change is
// taken once two looks in a row, tokensCheckEvery apart, read the same content, so that a file
// caught half-written (an editor writing it over in place) is neither served nor logged as
// broken. A file that cannot be read or does not parse leaves the tokens as they were, and is
// logged once: a read error until the file is read again, a content until it changes.
func (s *Server) followTokens(ctx context.Context, path string, served []byte) {
	log := s.log.With().Str("file", path).Logger()
	t := time.NewTicker(tokensCheckEvery)
	defer t.Stop()
	looks := tokensLooks{taken: served, seen: served, read: true}
	unread := "" // the read error logged last
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		doc, err := os.ReadFile(path)
		if err != nil {
			looks.unread()
			if err.Error() != unread {
				unread = err.Error()
				log.Error().Err(err).Msg("tokens file not read: the api keeps the tokens it had")
			}
			continue
		}
		unread = ""
		if !looks.take(doc) {
			continue
		}
		toks, err := ParseTokens(doc)
		if err != nil {
			log.Error().Err(err).Msg("tokens file refused: the api keeps the tokens it had")
			continue
		}
		s.tokens.Store(toks)
		s.changed() // a status stream whose token is gone ends
		log.Info().Int("tokens", toks.Len()).Msg("tokens file read again")
	}
}

// tokensLooks is what followTokens has read of the tokens file.
type tokensLooks struct {
	taken []byte // the content last taken: served, or refused as not parsing
	seen  []byte // what the look before read
	read  bool   // whether the look before read the file
}

// take reports whether doc, what a look read, is to be taken now: it is not what was taken last,
// and the look before read it too. Two looks that read it with others between them are not two
// in a row: a file caught half-written (empty, as an editor writing it over in place leaves it)
// once, then as served, then half-written again was served.
func (l *tokensLooks) take(doc []byte) bool {
	again := l.read && bytes.Equal(doc, l.seen)
	l.seen, l.read = doc, true
	if !again || bytes.Equal(doc, l.taken) {
		return false
	}
	l.taken = doc
	return true
}

// unread notes a look that could not read the file, so that the looks either side of it are not
// two in a row.
func (l *tokensLooks) unread() { l.read = false }
