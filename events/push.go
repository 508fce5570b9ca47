package events

// Event types of RFC 2136 pushes to an existing primary DNS server.
const (
	// TypeZonePushed carries a ZonePush: the primary accepted Detour's records at a serial.
	TypeZonePushed = "detour.dns.pushed.v1"
	// TypeZonePushFailed carries a ZonePush: an update was not accepted and will be retried.
	TypeZonePushFailed = "detour.dns.push_failed.v1"
)

// ZonePush records one attempt to push a zone's records to a primary with RFC 2136 UPDATE.
type ZonePush struct {
	Zone string `json:"zone"`
	// Server is the primary's ip:port.
	Server string `json:"server"`
	// Serial is Detour's serial of the zone whose records were pushed.
	Serial uint32 `json:"serial"`
	// Attempt counts the attempts for this serial, from 1.
	Attempt int `json:"attempt"`
	// RRsets is how many RRsets the update replaced or removed.
	RRsets int `json:"rrsets"`
	// Error says why a push failed.
	Error string `json:"error,omitempty"`
}
