package dnsupdater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// dnsReads reads the subjects of the DNS stream (events.ZoneSubject), one server's and the
// other writers' of its zones, as they were when openReads asked how many messages each holds.
// It reads by batched direct gets: one request answered by up to a batch of messages of a
// subject, or of every subject, in order, then an end-of-batch status that tells how many more
// there are.
type dnsReads struct {
	nc *nats.Conn
	st jetstream.Stream
	// replies receives the answers to every request, each on inbox.<its number>, and hands them
	// to the request waiting in waiting: a subscription a request would cost it a millisecond.
	replies *nats.Subscription
	inbox   string
	mu      sync.Mutex
	asked   uint64
	waiting map[string]chan *nats.Msg
	// get is the stream's direct get subject.
	get string
	// first and last are the stream's first and last sequences when opened.
	first, last uint64
	// counts holds how many messages each subject of the server held when opened, and
	// peerCounts each subject of the other writers; peers lists those of each zone, by its
	// token (events.ZoneToken).
	counts, peerCounts map[string]uint64
	peers              map[string][]string
	// swept holds the newest messages of the other writers' subjects that a sweep kept (see
	// sweep); written before the zones are read, then only read.
	swept map[string][]storedMsg
}

// openReads asks the DNS stream how many messages each of its subjects holds, the server
// token's and the other writers': one request, or one per 100,000 subjects. Close it once read.
func openReads(ctx context.Context, js jetstream.JetStream, token string) (*dnsReads, error) {
	ctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamDNS)
	if err != nil {
		return nil, fmt.Errorf("open the dns stream: %w", err)
	}
	all := events.WriterZoneSubjects(token)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(events.SubjectDNS))
	if err != nil {
		return nil, fmt.Errorf("count the messages of %s: %w", events.SubjectDNS, err)
	}
	if !info.Config.AllowDirect {
		return nil, fmt.Errorf("read %s: stream %s does not allow direct gets", all, events.StreamDNS)
	}
	o := js.Options()
	prefix := o.APIPrefix
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case prefix == "":
		prefix = jetstream.DefaultAPIPrefix
	case !strings.HasSuffix(prefix, "."):
		prefix += "."
	}
	r := &dnsReads{nc: js.Conn(), st: st, get: prefix + "DIRECT.GET." + events.StreamDNS,
		first: info.State.FirstSeq, last: info.State.LastSeq, counts: map[string]uint64{}, peerCounts: map[string]uint64{},
		peers: map[string][]string{}, inbox: js.Conn().NewInbox(), waiting: map[string]chan *nats.Msg{}}
	for subject, n := range info.State.Subjects {
		if subjectMatches(all, subject) {
			r.counts[subject] = n
			continue
		}
		if tok := events.SplitSubject(subject, "detour.dns"); len(tok) == 2 {
			r.peerCounts[subject] = n
			r.peers[tok[0]] = append(r.peers[tok[0]], subject)
		}
	}
	for _, subjects := range r.peers {
		slices.Sort(subjects)
	}
	r.replies, err = r.nc.Subscribe(r.inbox+".*", r.hand)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", all, err)
	}
	return r, nil
}

// hand gives the answer m to the request waiting for it. It never blocks, or every later
// answer would wait behind it: a request has room for every answer it asked for, and one more
// than that is dropped (the request fails on the first one too many).
func (r *dnsReads) hand(m *nats.Msg) {
	r.mu.Lock()
	answers := r.waiting[m.Subject]
	r.mu.Unlock()
	if answers != nil {
		select {
		case answers <- m:
		default:
		}
	}
}

// close ends the reads.
func (r *dnsReads) close() { _ = r.replies.Unsubscribe() }

// sweeps reports whether zones are best read by a sweep of every subject of the DNS stream:
// when the subjects hold at most twice the messages that reading the zones one by one, the
// server's subjects of them and the other writers', would look at.
func (r *dnsReads) sweeps(zones []*zone.Zone, token string) bool {
	var total, needed uint64
	for _, c := range r.counts {
		total += c
	}
	for _, c := range r.peerCounts {
		total += c
	}
	for _, z := range zones {
		needed += min(r.counts[events.ZoneSubject(z.Name, token)], maxHistoryReads)
		for _, subject := range r.peers[events.ZoneToken(z.Name)] {
			needed += min(r.peerCounts[subject], maxHistoryReads)
		}
	}
	return needed > 0 && total <= 2*needed
}

// sweep reads every message of the DNS stream up to its last sequence when opened,
// readBackBatch a request, and returns the fold of each of zones, in their order: each over its
// subject's newest maxHistoryReads messages, as history reads them. It keeps the newest
// maxHistoryReads messages of the other writers' subjects of zones, which peerVersions then
// reads, as it would from the stream.
func (r *dnsReads) sweep(ctx context.Context, zones []*zone.Zone, self writer) ([]*historyFold, error) {
	kept := map[string][]storedMsg{}
	for _, z := range zones {
		kept[events.ZoneSubject(z.Name, self.token)] = nil
		for _, subject := range r.peers[events.ZoneToken(z.Name)] {
			kept[subject] = nil
		}
	}
	for seq := r.first; seq <= r.last; {
		msgs, more, err := r.batch(ctx, seq, events.SubjectDNS, readBackBatch)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.seq > r.last {
				more = 0
				break
			}
			seq = m.seq + 1
			if k, ok := kept[m.subject]; ok {
				if len(k) == 2*maxHistoryReads {
					k = append(k[:0], k[maxHistoryReads:]...)
				}
				kept[m.subject] = append(k, m)
			}
		}
		if len(msgs) == 0 || more == 0 {
			break
		}
	}
	r.swept = map[string][]storedMsg{}
	for _, z := range zones {
		for _, subject := range r.peers[events.ZoneToken(z.Name)] {
			k := kept[subject]
			r.swept[subject] = k[max(0, len(k)-maxHistoryReads):]
		}
	}
	folds := make([]*historyFold, len(zones))
	for i, z := range zones {
		folds[i] = newHistoryFold(z.Name, self, z.Serial)
		k := kept[events.ZoneSubject(z.Name, self.token)]
		for j := len(k) - 1; j >= max(0, len(k)-maxHistoryReads); j-- {
			if folds[i].add(k[j].data) {
				break
			}
		}
	}
	return folds, nil
}

// history returns the IXFR history of zone name that its subject records up to serial, oldest
// first, and the version served before this run (see historyFold), reading the subject newest
// first (see newestFirst) until the fold is done.
func (r *dnsReads) history(ctx context.Context, name string, self writer, serial uint32) ([]zone.Delta, *recorded, error) {
	subject := events.ZoneSubject(name, self.token)
	f := newHistoryFold(name, self, serial)
	if _, err := r.newestFirst(ctx, subject, r.counts[subject], func(m storedMsg) bool { return f.add(m.data) }); err != nil {
		return nil, nil, fmt.Errorf("read history of %s: %w", name, err)
	}
	h, served := f.result()
	return h, served, nil
}

// peerVersions hands see the versions each other writer recorded of zone name, as
// peerVersionOf reads them for self, from the newest of its subject back to the first one
// before the serial oldest (RFC 1982), at most maxHistoryReads messages a writer: the versions
// whose serials a secondary may hold and ask this server's IXFR history about. It reports
// whether it read that far back on every subject: a writer of more messages since than it reads
// may have recorded any serial from oldest on, with any records.
func (r *dnsReads) peerVersions(ctx context.Context, name string, self peerSelf, oldest uint32, see func(peerVersion)) (bool, error) {
	all := true
	for _, subject := range r.peers[events.ZoneToken(name)] {
		back, err := r.newestFirst(ctx, subject, r.peerCounts[subject], func(m storedMsg) bool {
			v, rec := peerVersionOf(m.subject, m.data, m.seq, self)
			if rec == recordIgnored || rec == recordOwn {
				return false
			}
			see(v)
			return serialAfter(oldest, v.serial)
		})
		if err != nil {
			return false, fmt.Errorf("read the versions of %s on %s: %w", name, subject, err)
		}
		all = all && back
	}
	return all, nil
}

// newestFirst hands visit the messages of subject, which held count when opened, newest first,
// until visit reports that it is done: those a sweep kept, if it kept the subject's. It reports
// whether it went as far back as visit asked: visit was done, or it read the subject's first
// message. It reads the subject backwards from its last message in
// growing windows, each by as few batches as it holds, at most maxHistoryReads messages (the
// other subjects' count too): a subject that held no more than that when opened is read by one
// request from the stream's first sequence, one that held none by none.
func (r *dnsReads) newestFirst(ctx context.Context, subject string, count uint64, visit func(storedMsg) bool) (bool, error) {
	if msgs, ok := r.swept[subject]; ok {
		for i := len(msgs) - 1; i >= 0; i-- {
			if visit(msgs[i]) {
				return true, nil
			}
		}
		return count <= uint64(len(msgs)), nil
	}
	if count == 0 {
		return true, nil
	}
	end, window := r.last, r.last-r.first+1
	if count > maxHistoryReads {
		lctx, cancel := context.WithTimeout(ctx, readBackTimeout)
		last, err := r.st.GetLastMsgForSubject(lctx, subject)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		end, window = last.Sequence, maxDeltas
	}
	read := 0
	for ; read < maxHistoryReads; window *= 2 {
		start := r.first
		if end >= r.first+window {
			start = end - window + 1
		}
		var batch []storedMsg
	window:
		for seq := start; seq <= end && read < maxHistoryReads; {
			msgs, more, err := r.batch(ctx, seq, subject, int(min(uint64(maxHistoryReads-read), end-seq+1)))
			if err != nil {
				return false, fmt.Errorf("at seq %d: %w", seq, err)
			}
			for _, m := range msgs {
				if m.seq > end {
					break window
				}
				read++
				seq = m.seq + 1
				batch = append(batch, m)
			}
			if len(msgs) == 0 || more == 0 {
				break
			}
		}
		for i := len(batch) - 1; i >= 0; i-- {
			if visit(batch[i]) {
				return true, nil
			}
		}
		if start == r.first {
			return read < maxHistoryReads, nil
		}
		end = start - 1
	}
	return false, nil
}

// storedMsg is one message a direct get read.
type storedMsg struct {
	seq     uint64
	subject string
	data    []byte
}

// directGet is a batched direct get request (ADR-31).
type directGet struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

// batch asks, by one request that may wait readBackTimeout, for up to n messages of subject (a
// wildcard too) from seq on, and returns them in order, with how many more of subject the stream
// held after them when it answered.
func (r *dnsReads) batch(ctx context.Context, seq uint64, subject string, n int) ([]storedMsg, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	defer cancel()
	req, err := json.Marshal(directGet{Seq: max(seq, 1), NextFor: subject, Batch: n})
	if err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	r.asked++
	reply := r.inbox + "." + strconv.FormatUint(r.asked, 10)
	answers := make(chan *nats.Msg, n+1) // n messages and the end of the batch
	r.waiting[reply] = answers
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, reply)
		r.mu.Unlock()
	}()
	if err := r.nc.PublishRequest(r.get, reply, req); err != nil {
		return nil, 0, err
	}
	b := batchReply{subject: subject, from: max(seq, 1), n: n}
	for {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		done, more, err := b.take(m.Header, m.Data)
		if err != nil {
			return nil, 0, fmt.Errorf("direct get of %s: %w", subject, err)
		}
		if done {
			return b.msgs, more, nil
		}
	}
}

// batchReply reads the answers of one batched direct get of up to n messages of subject (a
// wildcard too) from the sequence from on, in the order the stream's server sends them.
type batchReply struct {
	subject string
	from    uint64
	n       int
	msgs    []storedMsg
}

// take reads one answer, its headers h and data: a message, kept in msgs, or the end of the
// batch (done), with how many more messages of the subject the stream held after those sent.
func (b *batchReply) take(h nats.Header, data []byte) (done bool, more uint64, err error) {
	m, more, end, err := events.ParseDirectGet(h, data)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound): // none from seq on
		return true, 0, nil
	case err != nil:
		return false, 0, err
	case end:
		return true, more, nil
	}
	if len(b.msgs) == b.n {
		return false, 0, fmt.Errorf("more than the %d messages asked for", b.n)
	}
	s := m.Sequence
	// The readers go on from the sequence after the last message: one before it would have
	// them read the same messages for ever.
	after := b.from - 1
	if len(b.msgs) > 0 {
		after = b.msgs[len(b.msgs)-1].seq
	}
	if s <= after {
		return false, 0, fmt.Errorf("message at seq %d after seq %d", s, after)
	}
	subject := m.Subject
	if !subjectMatches(b.subject, subject) {
		return false, 0, fmt.Errorf("message at seq %d of subject %q, not of %s", s, subject, b.subject)
	}
	b.msgs = append(b.msgs, storedMsg{seq: s, subject: subject, data: data})
	return false, 0, nil
}

// subjectMatches reports whether subject, a message's, is one that filter (a subject, or one
// with "*" and ">" wildcards) matches.
func subjectMatches(filter, subject string) bool {
	if subject == "" {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, ".")
		if f == ">" && !fmore {
			return subject != ""
		}
		s, srest, smore := strings.Cut(subject, ".")
		if s == "" || f != "*" && f != s || fmore != smore {
			return false
		}
		if !fmore {
			return true
		}
		filter, subject = frest, srest
	}
}
