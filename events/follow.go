package events

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FollowHeartbeat is the idle heartbeat Detour's followers ask of JetStream. A follower whose
// consumer lived on a server that died notices after two missed heartbeats and re-creates it
// elsewhere; nats.go's default (5 s) would leave DNS answers and decisions stale for ten seconds.
const FollowHeartbeat = 500 * time.Millisecond

// FollowOptions are the pull options of every Follower's consumer, so that losing a JetStream
// node costs about a second, not ten.
func FollowOptions() []jetstream.PullMessagesOpt {
	return []jetstream.PullMessagesOpt{jetstream.PullHeartbeat(FollowHeartbeat), jetstream.PullExpiry(5 * time.Second)}
}
