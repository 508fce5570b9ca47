package dnsupdater

import (
	"encoding/json"
	"fmt"

	"github.com/detourdev/detour/events"
)

// envelopeRoom is what a ZoneChanged event's envelope, headers and fixed fields take beyond its
// changes, with a margin.
const envelopeRoom = 4 << 10

// splitZoneChange returns zc encoded as the payloads of events that each fit in limit bytes: zc
// itself when it fits; otherwise its changes spread over numbered parts, without the IXFR step
// (which readers then take for a break in the history, so secondaries get the whole zone once).
// The payloads are returned encoded, as measured, so that the common single one is encoded once;
// numbered says that they are parts (even a single one, when the step alone made zc too long).
func splitZoneChange(zc events.ZoneChanged, limit int) (payloads []json.RawMessage, numbered bool) {
	if whole := encodeZoneChange(zc); len(whole) <= limit-envelopeRoom {
		return []json.RawMessage{whole}, false
	}
	var parts []events.ZoneChanged
	part := events.ZoneChanged{Zone: zc.Zone, Serial: zc.Serial, Server: zc.Server, Digest: zc.Digest, StateSeq: zc.StateSeq}
	used := 0
	for _, c := range zc.Changes {
		n := size(c) + 1
		if len(part.Changes) > 0 && used+n > limit-envelopeRoom {
			parts = append(parts, part)
			part = events.ZoneChanged{Zone: zc.Zone, Serial: zc.Serial, Server: zc.Server, Digest: zc.Digest, StateSeq: zc.StateSeq}
			used = 0
		}
		part.Changes = append(part.Changes, c)
		used += n
	}
	parts = append(parts, part)
	encoded := make([]json.RawMessage, 0, len(parts))
	for i := range parts {
		parts[i].Part, parts[i].Parts = i+1, len(parts)
		encoded = append(encoded, encodeZoneChange(parts[i]))
	}
	return encoded, true
}

// encodeZoneChange returns zc in JSON. A ZoneChanged holds only strings, numbers and lists of
// them, which always encode.
func encodeZoneChange(zc events.ZoneChanged) json.RawMessage {
	b, err := json.Marshal(zc)
	if err != nil {
		panic(fmt.Sprintf("encode zone change: %v", err))
	}
	return b
}

// size is the length of v in JSON (0 if it cannot be encoded).
func size(v any) int {
	b, _ := json.Marshal(v)
	return len(b)
}
