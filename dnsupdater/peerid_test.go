package dnsupdater

import (
	"context"
	"testing"
	"time"

	"github.com/detourdev/detour/events"
	"github.com/detourdev/detour/events/eventstest"
	"github.com/rs/zerolog"
)

// zoneChangedOn publishes on subject a ZoneChanged event of zc, dated at, with an id no DNS
// server derived.
func zoneChangedOn(t *testing.T, js *eventstest.Server, subject string, at time.Time, zc events.ZoneChanged) {
	t.Helper()
	env, err := events.New(events.TypeZoneChanged, "dns-forger", at, zc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.JS.Publish(context.Background(), subject, env.Encode()); err != nil {
		t.Fatal(err)
	}
}

// tableSerial is the serial srv serves apex at, read from its table rather than asked over the
// network (0: none yet).
func tableSerial(srv *Server, apex string) uint32 { return srv.table.Load().serials[apex] }

// TestTheServerIDARecordClaimsDoesNotChooseWhichServerReStamps: two servers whose records of a
// zone differ at one position (other configurations) leave the re-stamp to one of them, the
// same whatever server id the other's record claims: a DNS user may write any id in its
// records, but only on its own subjects, and its writer is what counts.
func TestTheServerIDARecordClaimsDoesNotChooseWhichServerReStamps(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	self := peerSelf{id: "id-m", writer: "dns-m", key: events.NewIDKey()}
	own := ownVersion{serial: 1000, position: 10, since: 5, digest: func() string { return "mine" }}
	restamps := map[string]bool{}
	for _, claimed := range []string{"id-a", "id-z"} {
		env, err := events.New(events.TypeZoneChanged, "dns-a", now, events.ZoneChanged{Zone: "demo.test.", Serial: 1000, Server: claimed, Digest: "theirs", StateSeq: 10})
		if err != nil {
			t.Fatal(err)
		}
		v, rec := peerVersionOf(events.ZoneSubject("demo.test.", "dns-a"), env.Encode(), 1, self)
		if rec != recordOfPeer {
			t.Fatalf("the record of dns-a claiming %s: not taken for another server's version (%d)", claimed, rec)
		}
		c := newPeerClock(peerName(self.writer, self.id))
		c.see(v, now)
		c.restamp("demo.test.", own, now)
		_, ok, _ := c.restamp("demo.test.", own, now.Add(restampGrace))
		restamps[claimed] = ok
	}
	if restamps["id-a"] != restamps["id-z"] {
		t.Errorf("whether this server re-stamps depends on the id dns-a's record claims: %v", restamps)
	}
}

// TestARecordClaimingThisServersIDOnAnotherServersSubjectCountsAsThatServersWithOneWarning:
// another DNS server, under its own NATS user, records on its own subject versions that claim
// this server's id, at a serial an hour ahead: its data dir was copied from this one's with
// dns-server-id in it. It is a master like any other, and a secondary may hold its serial:
// this server's next version passes that serial, as it passes any other server's, and one
// warning for the two tells the operator. A forger gains nothing by it that another id would
// not give it: the record counts under its writer (peerName), a day's lead at most.
func TestARecordClaimingThisServersIDOnAnotherServersSubjectCountsAsThatServersWithOneWarning(t *testing.T) {
	js := eventstest.Start(t)
	srv, logs := startLogged(t, js, eventstest.Config(t, demoConfig), t.TempDir(), nil)
	eventstest.Eventually(t, 5*time.Second, func() bool { return tableSerial(srv, "demo.test.") != 0 }, "the zone served")
	ahead := uint32(time.Now().Unix()) + 3600
	copied := events.ZoneSubject("demo.test.", "dns-copy")
	for range 2 {
		zoneChangedOn(t, js, copied, time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: ahead, Server: srv.id, Digest: "the copy's", StateSeq: 1 << 40})
	}
	// A record a day ahead from a third server, read after the copy's, is logged by the
	// refresher once the follower has handed it over: both of the copy's are read by then.
	zoneChangedOn(t, js, events.ZoneSubject("demo.test.", "dns-third"), time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: ahead + 2*maxPeerLead, Server: "id-third", Digest: "d"})
	const warning = "a version on another dns server's subject names this server's id; counted as that server's: its data dir was copied from this one's (remove dns-server-id from it and restart it), or the record is forged"
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return logs.Count("another dns server recorded a serial more than a day past the clock; ignored") > 0
	}, "the third server's record read")
	if n := logs.Count(warning); n != 1 {
		t.Errorf("two records of the copy's: want one warning line, got %d", n)
	}
	before := tableSerial(srv, "demo.test.")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, func() bool { return tableSerial(srv, "demo.test.") != before }, "the failover served")
	if got := tableSerial(srv, "demo.test."); !serialAfter(got, ahead) {
		t.Errorf("the next version took serial %d, not past the %d the copy served", got, ahead)
	}
}

// TestAServerWhoseDataDirWasCopiedIsToldToTheOperator: a second server runs from a copy of this
// one's data dir and credentials, and so records its versions on this server's subjects under
// its id. This server's own versions raise nothing; the copy's get one error line naming the
// id file to remove.
func TestAServerWhoseDataDirWasCopiedIsToldToTheOperator(t *testing.T) {
	js := eventstest.Start(t)
	srv, logs := startLogged(t, js, eventstest.Config(t, demoConfig), t.TempDir(), nil)
	eventstest.Eventually(t, 5*time.Second, func() bool { return tableSerial(srv, "demo.test.") != 0 }, "the zone served")
	before := tableSerial(srv, "demo.test.")
	endpointDown(t, js, "shop", "us-west", "127-0-0-11_8081")
	eventstest.Eventually(t, 10*time.Second, func() bool { return tableSerial(srv, "demo.test.") != before }, "the failover served")
	own := tableSerial(srv, "demo.test.")
	// The copy's version comes last on the subject, which a follower starting late reads alone.
	eventstest.Eventually(t, 10*time.Second, func() bool {
		m, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), events.ZoneSubject("demo.test.", srv.writer))
		if err != nil {
			return false
		}
		var zc events.ZoneChanged
		e, err := events.Decode(m.Data)
		return err == nil && e.Payload(&zc) == nil && zc.Serial == own
	}, "serial %d recorded", own)
	zoneChangedOn(t, js, events.ZoneSubject("demo.test.", srv.writer), time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: own + 1, Server: srv.id, Digest: "the copy's", StateSeq: 1})
	const line = "another dns server records versions under this server's id and credentials: its data dir was copied from this one's, and the two never pass each other's serials; stop it, remove dns-server-id from its data dir and start it again"
	eventstest.Eventually(t, 10*time.Second, func() bool { return logs.Count(line) > 0 }, "the copy told")
	if n := logs.Count(line); n != 1 {
		t.Errorf("one version of the copy's after this server's own two: want one error line, got %d", n)
	}
}

// TestAnotherServersRecordDoesNotHideAThirdServersOlderRecordsAtItsSerial: dns-b recorded the
// zone at this server's serial with older records, which a secondary may have taken from it:
// this server must re-stamp, or the secondary keeps dns-b's records until the zone next
// changes. A DNS user (dns-x) that records the zone after dns-b, at its serial or the next,
// with this server's digest, or from a position far ahead, must not hide dns-b's record.
func TestAnotherServersRecordDoesNotHideAThirdServersOlderRecordsAtItsSerial(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	own := ownVersion{serial: 1000, position: 10, since: 8, digest: func() string { return "mine" }}
	b := peerVersion{zone: "demo.test.", serial: 1000, digest: "theirs", stateSeq: 5, server: peerName("dns-b", "id-b")}
	for _, tt := range []struct {
		name string
		x    peerVersion
	}{
		{"at its serial with this server's digest", peerVersion{serial: 1000, digest: "mine", stateSeq: 10}},
		{"one past its serial with this server's digest", peerVersion{serial: 1001, digest: "mine", stateSeq: 10}},
		{"at its serial from a position far ahead", peerVersion{serial: 1000, digest: "forged", stateSeq: 1 << 62}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newPeerClock(peerName("dns-m", "id-m"))
			c.see(b, now)
			x := tt.x
			x.zone, x.server = "demo.test.", peerName("dns-x", "id-x")
			c.see(x, now)
			c.restamp("demo.test.", own, now)
			past, ok, _ := c.restamp("demo.test.", own, now.Add(restampGrace))
			if !ok {
				t.Fatal("no re-stamp: dns-x's record hid dns-b's older records at this server's serial")
			}
			if past != x.serial {
				t.Errorf("re-stamped past %d, want past the highest serial recorded, %d", past, x.serial)
			}
		})
	}
}

// TestARestartAfterTheClockWasSetBackIsNotTakenForACopiedDataDir: the run before this one
// recorded its last version with a clock a minute ahead (set back since, by NTP at boot or on
// another host the data dir moved to). That version, on this server's subject under its id,
// is the previous run's, not a copy's: no error may tell the operator to remove dns-server-id.
func TestARestartAfterTheClockWasSetBackIsNotTakenForACopiedDataDir(t *testing.T) {
	js := eventstest.Start(t)
	dir := t.TempDir()
	first, err := New(Options{JS: js.JS, Config: eventstest.Config(t, demoConfig), Addr: "127.0.0.1:0", DataDir: dir, Name: "dns-test",
		Log: zerolog.New(zerolog.NewTestWriter(t)), UDPSockets: 2})
	if err != nil {
		t.Fatal(err)
	}
	stop := eventstest.Run(t, "first run", first.Run)
	subject := events.ZoneSubject("demo.test.", first.writer)
	var last events.Envelope
	eventstest.Eventually(t, 10*time.Second, func() bool {
		m, err := js.Stream(t, events.StreamDNS).GetLastMsgForSubject(context.Background(), subject)
		if err != nil {
			return false
		}
		last, err = events.Decode(m.Data)
		return err == nil && last.Type == events.TypeZoneChanged
	}, "the first run's version recorded")
	stop()
	// The first run's last version, as its clock a minute ahead dated it.
	last.Time = time.Now().Add(time.Minute).UTC()
	if _, err := js.JS.Publish(context.Background(), subject, last.Encode()); err != nil {
		t.Fatal(err)
	}
	// A version claiming the server's id on another writer's subject, after that one in the
	// stream: once its warning is logged, the follower has read the first run's version.
	zoneChangedOn(t, js, events.ZoneSubject("demo.test.", "dns-other"), time.Now(), events.ZoneChanged{Zone: "demo.test.", Serial: 1, Server: first.id, Digest: "forged", StateSeq: 1})
	_, logs := startLogged(t, js, eventstest.Config(t, demoConfig), dir, nil)
	eventstest.Eventually(t, 10*time.Second, func() bool {
		return logs.Count("a version on another dns server's subject names this server's id; counted as that server's: its data dir was copied from this one's (remove dns-server-id from it and restart it), or the record is forged") > 0
	}, "the version on dns-other's subject read")
	if n := logs.Count("another dns server records versions under this server's id and credentials: its data dir was copied from this one's, and the two never pass each other's serials; stop it, remove dns-server-id from its data dir and start it again"); n != 0 {
		t.Errorf("the first run's version, dated a minute ahead of this run's clock, was taken for a copy's: %d error lines", n)
	}
}
