package events

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestAnEventBuiltFromItsEncodedPayloadIsTheEventBuiltFromTheValue(t *testing.T) {
	at := time.Date(2026, 12, 5, 9, 30, 0, 5, time.FixedZone("x", 3600))
	for _, data := range []any{
		ZoneChanged{Zone: "demo.test.", Serial: 7, Server: "s1", Changes: []RecordChange{{Name: "shop.demo.test.", Type: "A", Before: []string{"127.0.0.1"}, After: []string{"127.0.0.2"}}},
			Step: &ZoneStep{From: 6, Deleted: []string{`a "quoted" <&>`}, Added: []string{"\u2028"}}},
		ZoneChanged{Zone: "demo.test.", Serial: 8, Part: 2, Parts: 3},
	} {
		raw, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Derived(TypeZoneChanged, "dns-1", "cause-9", "dns-1|id|demo.test.@7", at, data)
		if err != nil {
			t.Fatal(err)
		}
		got := NewIDKey().DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "dns-1|id|demo.test.@7", at, raw)
		want.ID = got.ID
		if !bytes.Equal(got.Encode(), want.Encode()) {
			t.Errorf("built from its encoding:\n%s\nbuilt from the value:\n%s", got.Encode(), want.Encode())
		}
	}
}

func TestAnIDDerivedUnderAKeyIsStableAndNoOtherKeyNorTheSharedDerivationGivesIt(t *testing.T) {
	at := time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC)
	raw := json.RawMessage(`{}`)
	k := NewIDKey()
	a := k.DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "demo.test.@7", at, raw)
	if again := k.DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "demo.test.@7", at.Add(time.Second), raw); again.ID != a.ID {
		t.Errorf("one key, cause and key: ids %s and %s, want one", a.ID, again.ID)
	}
	if other := k.DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "demo.test.@8", at, raw); other.ID == a.ID {
		t.Errorf("another key gives the same id %s", a.ID)
	}
	shared, err := Derived(TypeZoneChanged, "dns-1", "cause-9", "demo.test.@7", at, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{NewIDKey().DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "demo.test.@7", at, raw).ID, shared.ID} {
		if id == a.ID {
			t.Errorf("an id another writer can compute equals the keyed one, %s", id)
		}
	}
}
