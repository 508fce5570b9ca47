package dnsupdater

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/miekg/dns"
)

// TestAnIXFRStepsOnlyFromASerialNoOtherServerRecordedWithOtherRecords: the changes from this
// server's version at a serial go to a secondary holding that serial only when every other
// server that recorded it did so with this server's records.
func TestAnIXFRStepsOnlyFromASerialNoOtherServerRecordedWithOtherRecords(t *testing.T) {
	tests := []struct {
		name    string
		records []digestRecord
		want    bool
	}{
		{name: "a serial only this server recorded", records: []digestRecord{{"", 7, "a"}, {"dns-b", 8, "b"}}, want: true},
		{name: "a serial no one recorded", records: nil, want: true},
		{name: "a serial both recorded alike", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, "a"}}, want: true},
		{name: "a serial another recorded with other records", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, "b"}}, want: false},
		{name: "a serial another recorded before this server's digest is known", records: []digestRecord{{"dns-b", 7, "a"}}, want: false},
		{name: "a serial one of two others recorded with other records", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, "a"}, {"dns-c", 7, "c"}}, want: false},
		{name: "a serial another pushed, without a digest", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, ""}}, want: false},
		{name: "a push after the version it pushes", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, "a"}, {"dns-b", 7, ""}}, want: true},
		{name: "a version after its push", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, ""}, {"dns-b", 7, "a"}}, want: true},
		{name: "a serial two servers of one writer recorded otherwise", records: []digestRecord{{"", 7, "a"}, {"dns-b", 7, "b"}, {"dns-b", 7, "a"}}, want: false},
		{name: "another's record pushed out by later ones", records: append([]digestRecord{{"", 7, "a"}, {"dns-b", 7, "b"}}, laterRecords("dns-b", 8, keptDigests)...), want: true},
		{name: "another's record kept among later ones", records: append([]digestRecord{{"", 7, "a"}, {"dns-b", 7, "b"}}, laterRecords("dns-b", 8, keptDigests-1)...), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newVersionDigests()
			for _, r := range tt.records {
				if r.writer == "" {
					d.own("demo.test.", r.serial, r.digest)
				} else {
					d.other("demo.test.", r.writer, r.serial, r.digest)
				}
			}
			if got := d.steps("demo.test.", 7); got != tt.want {
				t.Errorf("steps from 7: %v, want %v", got, tt.want)
			}
			if d.forget("demo.test."); !d.steps("demo.test.", 7) {
				t.Error("a zone forgotten still refuses steps from 7")
			}
		})
	}
}

// digestRecord is a version of demo.test. at serial with the records of digest, recorded by
// writer ("": this server).
type digestRecord struct {
	writer string
	serial uint32
	digest string
}

// laterRecords is n versions of writer at the serials from on.
func laterRecords(writer string, from uint32, n int) []digestRecord {
	out := make([]digestRecord, n)
	for i := range out {
		out[i] = digestRecord{writer: writer, serial: from + uint32(i), digest: "later"}
	}
	return out
}

// TestTwoServersOnOneConfigurationRecordEveryVersionWithTheSameDigest: two DNS servers on the
// same configuration (apps of every policy, static records) fold the same failovers; every
// version both recorded from the same position in STATE carries the same digest, so that an IXFR
// from a serial both recorded gets the changes, not the whole zone. A digest made over another
// form (records in another order, another case or TTL) would make every such IXFR an AXFR.
func TestTwoServersOnOneConfigurationRecordEveryVersionWithTheSameDigest(t *testing.T) {
	js := eventstest.Start(t)
	conf := strings.Replace(appsConfig, "  - name: demo.test\n", "  - name: demo.test\n    transfer_to: [\"127.0.0.1\"]\n", 1)
	cfg := eventstest.Config(t, conf)
	a := startNamed(t, js, cfg, t.TempDir(), "dns-a")
	b := startNamed(t, js, cfg, t.TempDir(), "dns-b")
	for i, ep := range []struct{ app, pool, endpoint string }{
		{"weighted", "a", "10-0-2-1_80"}, {"rr", "a", "10-0-3-2_80"}, {"shop", "p1", "127-0-0-11_80"},
		{"weighted", "a", "10-0-2-3_80"}, {"geo", "west", "10-0-0-1_80"}, {"rr", "a", "10-0-3-3_80"},
	} {
		endpointDown(t, js, ep.app, ep.pool, ep.endpoint)
		if i%2 == 1 {
			endpointUp(t, js, ep.app, ep.pool, ep.endpoint)
		}
	}
	// Both serve the last of STATE: their records alike, the SOA's serial aside.
	records := func(addr string) []string {
		rrs := transferRRs(t, addr, "demo.test.", dns.TypeAXFR, 0)
		rrs[0].(*dns.SOA).Serial = 0
		return zoneLines(rrs)
	}
	eventstest.Eventually(t, 10*time.Second, func() bool { return slices.Equal(records(a.srv.Addr()), records(b.srv.Addr())) },
		"both servers serve the same records")

	type version struct {
		writer, digest string
		stateSeq       uint64
	}
	both, current := 0, serial(t, a.srv.Addr())
	for at, es := range recordedSerials(t, js) {
		var vs []version
		for _, e := range es {
			var zc events.ZoneChanged
			if err := e.Payload(&zc); err != nil {
				t.Fatal(err)
			}
			if zc.Part > 1 {
				continue
			}
			vs = append(vs, version{writer: e.Source, digest: zc.Digest, stateSeq: zc.StateSeq})
		}
		for i := range vs {
			for _, w := range vs[i+1:] {
				if vs[i].writer == w.writer || vs[i].stateSeq != w.stateSeq {
					continue
				}
				both++
				if vs[i].digest != w.digest {
					t.Errorf("serial %d at STATE %d: %s recorded digest %s, %s %s", at, w.stateSeq, vs[i].writer, vs[i].digest, w.writer, w.digest)
				}
			}
		}
		alike := len(vs) == 2 && vs[0].writer != vs[1].writer && vs[0].digest == vs[1].digest
		if rrs := transferRRs(t, a.srv.Addr(), "demo.test.", dns.TypeIXFR, at); alike && at != current && (len(rrs) < 2 || rrs[1].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("IXFR from serial %d, which both servers recorded with the same records, answered the whole zone at %d", at, current)
		}
	}
	t.Logf("%d serials both servers recorded at one position in STATE", both)
}

// TestTheDigestsKeptAreTheLatestSerialsWhateverTheOrderTheyWereRead: at a start, the versions
// of another server are read back newest first, and those it records afterwards come in as it
// records them. The digests kept are still those of its latest keptDigests serials: a serial
// of this server's history that the other recorded with other records, read back at the
// start, still gets the whole zone once the other has recorded fewer than keptDigests serials
// since (before, the versions followed pushed out the newest read back first, and an IXFR
// from it got this server's changes, applied to the other's records).
func TestTheDigestsKeptAreTheLatestSerialsWhateverTheOrderTheyWereRead(t *testing.T) {
	const read, since = 300, keptDigests - 300 + 10
	d := newVersionDigests()
	for serial := uint32(1); serial <= read; serial++ {
		d.own("demo.test.", serial, "a")
	}
	for serial := uint32(read); serial >= 1; serial-- {
		d.other("demo.test.", "dns-b", serial, "b")
	}
	for serial := uint32(read + 1); serial <= read+since; serial++ {
		d.other("demo.test.", "dns-b", serial, "b")
	}
	for _, serial := range []uint32{read, read - 100, read + since - keptDigests + 1} {
		if d.steps("demo.test.", serial) {
			t.Errorf("dns-b recorded serials 1 to %d, %d with other records: an IXFR from %d, among its last %d, steps", read+since, serial, serial, keptDigests)
		}
	}
	if serial := uint32(read + since - keptDigests); !d.steps("demo.test.", serial) {
		t.Errorf("an IXFR from %d, before dns-b's last %d serials, gets the whole zone", serial, keptDigests)
	}
}
