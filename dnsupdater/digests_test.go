package dnsupdater

import "testing"

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
