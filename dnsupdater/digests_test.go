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
