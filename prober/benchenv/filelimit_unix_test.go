//go:build unix

package benchenv

import (
	"syscall"
	"testing"
)

func TestTheFileLimitIsRaisedToWhatIsWantedAndNeverLowered(t *testing.T) {
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &was); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &was) })
	hard := uint64(was.Max)
	if hard < 2048 {
		t.Skipf("the hard file limit %d leaves no room to lower the soft one and raise it again", hard)
	}
	low := was
	setLimit(&low.Cur, 1024)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := RaiseFileLimit(2048)
	if err != nil || got != 2048 {
		t.Fatalf("raised from 1024 to 2048: got %d, %v", got, err)
	}
	got, err = RaiseFileLimit(1500)
	if err != nil || got != 2048 {
		t.Fatalf("asked for 1500 with 2048: got %d, %v; want 2048 kept", got, err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if uint64(now.Cur) != 2048 || uint64(now.Max) != hard {
		t.Errorf("the limit is %d (hard %d), want 2048 (hard %d)", now.Cur, now.Max, hard)
	}
}
