package dnsupdater

import (
	"encoding/json"

	"github.com/detourdev/detour/events"
)

// envelopeRoom is what a ZoneChanged event's envelope, headers and fixed fields take beyond its
// changes, with a margin.
const envelopeRoom = 4 << 10

// splitZoneChange returns zc as events that each fit in limit bytes: zc itself when it fits;
// otherwise its changes spread over numbered parts, without the IXFR step (which readers then
// take for a break in the history, so secondaries get the whole zone once).
func splitZoneChange(zc events.ZoneChanged, limit int) []events.ZoneChanged {
	if size(zc) <= limit-envelopeRoom {
		return []events.ZoneChanged{zc}
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
	for i := range parts {
		parts[i].Part, parts[i].Parts = i+1, len(parts)
	}
	return parts
}

// size is the length of v in JSON (0 if it cannot be encoded).
func size(v any) int {
	b, _ := json.Marshal(v)
	return len(b)
}
