package dnsupdater

import (
	"encoding/json"

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
	if whole, err := json.Marshal(zc); err == nil && len(whole) <= limit-envelopeRoom {
		return []json.RawMessage{whole}, false
	}
	var parts []events.ZoneChanged
	part := events.ZoneChanged{Zone: zc.Zone, Serial: zc.Serial, Server: zc.Server}
	used := 0
	for _, c := range zc.Changes {
		n := size(c) + 1
		if len(part.Changes) > 0 && used+n > limit-envelopeRoom {
			parts = append(parts, part)
			part = events.ZoneChanged{Zone: zc.Zone, Serial: zc.Serial, Server: zc.Server}
			used = 0
		}
		part.Changes = append(part.Changes, c)
		used += n
	}
	parts = append(parts, part)
	encoded := make([]json.RawMessage, 0, len(parts))
	for i := range parts {
		parts[i].Part, parts[i].Parts = i+1, len(parts)
		b, err := json.Marshal(parts[i])
		if err != nil {
			return nil, true
		}
		encoded = append(encoded, b)
	}
	return encoded, true
}

// size is the length of v in JSON (0 if it cannot be encoded).
func size(v any) int {
	b, _ := json.Marshal(v)
	return len(b)
}
