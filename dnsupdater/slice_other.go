//go:build !linux

package dnsupdater

import "time"

// requestSlice asks nothing of other systems' schedulers (see slice_linux.go); it reports that
// the request was not kept.
func requestSlice(time.Duration) (threads int, ok bool, err error) { return 0, false, nil }
