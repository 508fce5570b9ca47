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
		got := DerivedJSON(TypeZoneChanged, "dns-1", "cause-9", "dns-1|id|demo.test.@7", at, raw)
		if !bytes.Equal(got.Encode(), want.Encode()) {
			t.Errorf("built from its encoding:\n%s\nbuilt from the value:\n%s", got.Encode(), want.Encode())
		}
	}
}
