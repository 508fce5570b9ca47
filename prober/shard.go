package prober

import "hash/fnv"

// Owner returns the member that runs the check key: the one with the highest score for it
// (rendezvous, or highest-random-weight, hashing). Every worker that sees the same members picks
// the same owner; when a member leaves, only its checks move, and when one joins it takes about
// 1/n of the checks from the others. Owner returns "" when members is empty.
func Owner(key string, members []string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		s := score(m, key)
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// score mixes a member and a key into a well-spread 64-bit weight.
func score(member, key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	return mix(h.Sum64())
}

// mix is the splitmix64 finalizer: FNV alone spreads similar inputs poorly in the high bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashKey is a check key's own hash, for its phase.
func hashKey(key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return mix(h.Sum64())
}
