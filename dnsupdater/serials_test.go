package dnsupdater

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/detourdev/detour/dnsupdater/zone"
	"github.com/detourdev/detour/events/eventstest"
)

// reserverRun drives a serialReserver on a fake clock, as the refresher and the renewer would,
// and checks after each step that the file on disk (what a crash leaves) covers every serial
// served.
type reserverRun struct {
	t      *testing.T
	r      *serialReserver
	clock  time.Time
	serial uint32
	// waited counts the versions whose cover wrote the file before they were served.
	waited int
	// renewals counts the writes of the renewer.
	renewals int
}

func newReserverRun(t *testing.T) *reserverRun {
	run := &reserverRun{t: t, clock: time.Unix(1_800_000_000, 0)}
	run.r = newSerialReserver(t.TempDir(), func() time.Time { return run.clock })
	return run
}

// file is the serials file as a crash would leave it now.
func (run *reserverRun) file() []byte {
	b, err := os.ReadFile(filepath.Join(run.r.dir, serialsFile))
	if err != nil && !os.IsNotExist(err) {
		run.t.Fatal(err)
	}
	return b
}

// version serves the zone's next serial at the clock's time, as the refresher does.
func (run *reserverRun) version() {
	run.t.Helper()
	run.serial = NextSerial(run.serial, run.clock)
	before := run.file()
	if err := run.r.cover([]*zone.Zone{{Name: "demo.test.", Serial: run.serial}}); err != nil {
		run.t.Fatal(err)
	}
	if !bytes.Equal(before, run.file()) {
		run.waited++
	}
	run.covered()
}

// renew does what the renewer does when asked, or when its ticker fires (tick).
func (run *reserverRun) renew(tick bool) {
	run.t.Helper()
	select {
	case <-run.r.renew:
	default:
		if !tick {
			return
		}
	}
	before := run.file()
	if err := run.r.renewDue(); err != nil {
		run.t.Fatal(err)
	}
	if !bytes.Equal(before, run.file()) {
		run.renewals++
	}
	run.covered()
}

// covered fails unless the serials file on disk covers the serial served.
func (run *reserverRun) covered() {
	run.t.Helper()
	marks, err := loadSerialMarks(run.r.dir)
	if err != nil {
		run.t.Fatal(err)
	}
	if mark, ok := marks["demo.test."]; run.serial != 0 && (!ok || serialAfter(run.serial, mark)) {
		run.t.Fatalf("serial %d served, the serials file on disk reserves %d (present %v): a crash now could serve it again", run.serial, mark, ok)
	}
}

// ahead is how far the reserved mark on disk runs ahead of the clock: a restart after a crash
// now starts that far ahead.
func (run *reserverRun) ahead() int64 {
	marks, err := loadSerialMarks(run.r.dir)
	if err != nil {
		run.t.Fatal(err)
	}
	return int64(int32(marks["demo.test."] - uint32(run.clock.Unix())))
}

func TestVersionsAtTheClocksPaceAndAfterAQuietSpellDoNotWaitForTheSerialsFile(t *testing.T) {
	run := newReserverRun(t)
	run.version() // the first version served: nothing is reserved yet, so it waits
	if run.waited != 1 {
		t.Fatalf("the first version wrote the serials file %d times before it was served; want once", run.waited)
	}
	run.waited = 0
	// An hour: a version every 7 seconds for ten minutes, ten quiet minutes, and again.
	for s := 1; s <= 3600; s++ {
		run.clock = run.clock.Add(time.Second)
		if (s/600)%2 == 0 && s%7 == 0 {
			run.version()
		}
		run.renew(s%int(renewEvery/time.Second) == 0)
		if a := run.ahead(); a > reserveAhead {
			t.Fatalf("at %d s the serials file reserves %d s ahead of the clock; want at most %d", s, a, reserveAhead)
		}
	}
	if run.waited != 0 {
		t.Errorf("%d versions waited for the serials file; want none, the renewer keeping it ahead", run.waited)
	}
	if max := 3600/renewWithin + 1; run.renewals > max || run.renewals < 3600/reserveAhead {
		t.Errorf("the renewer wrote the serials file %d times in an hour; want one per %d to %d s", run.renewals, renewWithin, reserveAhead)
	}
}

func TestABurstThatOutrunsTheRenewerWaitsForTheSerialsFileAndNeverServesPastIt(t *testing.T) {
	run := newReserverRun(t)
	// A thousand versions in one second: serials run ahead of the clock faster than the
	// renewer (never run here) moves the marks.
	for range 1000 {
		run.version()
	}
	if want := 1000 / reserveAhead; run.waited < want || run.waited > want+1 {
		t.Errorf("a burst of 1000 versions with no renewal wrote the serials file %d times; want one per %d versions", run.waited, reserveAhead)
	}
	// With the renewer keeping up, the burst never waits after the first version.
	run = newReserverRun(t)
	run.version()
	run.waited = 0
	for range 1000 {
		run.version()
		run.renew(false)
	}
	if run.waited != 0 {
		t.Errorf("a burst of 1000 versions with the renewer keeping up waited for the serials file %d times; want none", run.waited)
	}
}

func TestAStopReleasesTheMarksEvenAfterARenewal(t *testing.T) {
	run := newReserverRun(t)
	run.version()
	run.clock = run.clock.Add(45 * time.Second)
	run.renew(true)
	if run.renewals != 1 {
		t.Fatalf("the renewer wrote %d times 45 s after the first version; want once", run.renewals)
	}
	if err := run.r.release(map[string]uint32{"demo.test.": run.serial}); err != nil {
		t.Fatal(err)
	}
	if marks, err := loadSerialMarks(run.r.dir); err != nil || marks["demo.test."] != run.serial {
		t.Fatalf("after a release the serials file holds %v (%v); want demo.test. at %d, the serial served", marks, err, run.serial)
	}
}

// TestARestartAfterACrashRunsAtMostAboutAMinuteAheadOfTheClock crashes a server (its data dir
// copied as it is while it runs) after a version and restarts it on that copy: its first
// serial is after every one served, and about a minute ahead of the clock at most.
func TestARestartAfterACrashRunsAtMostAboutAMinuteAheadOfTheClock(t *testing.T) {
	dir := t.TempDir()
	js := eventstest.Start(t)
	cfg := eventstest.Config(t, demoConfig)
	h := startServer(t, js, cfg, dir)
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 2*time.Second, shopAnswers(t, h.srv.Addr(), "127.0.0.12"), "answer moves to us-east")
	last := serial(t, h.srv.Addr())
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	h.stop()

	r := startServer(t, js, cfg, crashed)
	got := serial(t, r.srv.Addr())
	now := uint32(time.Now().Unix())
	if !serialAfter(got, last) {
		t.Fatalf("after the crash the server serves serial %d; want one after %d, the last served before it", got, last)
	}
	// The versions served run at most a second ahead of the clock (the start's and the
	// change's may share a second), so the reservation alone sets the restarted serial ahead:
	// a minute, and those seconds.
	if ahead := time.Duration(int32(got-now)) * time.Second; ahead > time.Minute+2*time.Second {
		t.Errorf("after the crash the server serves serial %d, %v ahead of the clock; want at most about a minute", got, ahead)
	}
}
