package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestATraceLineIsReadWhateverItsCommandNameAndTGIDColumn(t *testing.T) {
	cases := []struct {
		line string
		want traceEvent
	}{
		{"         dnsperf-18905   (  18903) [001] .....  1632.093269: sys_sendto(fd: 0xc, buff: 0x7f1992029e90, len: 0x20, flags: 0, addr: 0x7ffce1dc85d8, addr_len: 0x10)",
			traceEvent{comm: "dnsperf", tid: 18905, tgid: 18903, at: 1632093269, name: "sys_sendto", inet: true, fd: 12}},
		{"         dnsperf-18903   (  18903) [000] .....  1632.090851: sys_sendto(fd: 4, buff: 0x7ffce1dc7c60, len: 0x14, flags: 0, addr: 0x7ffce1dc7c04, addr_len: 0xc)",
			traceEvent{comm: "dnsperf", tid: 18903, tgid: 18903, at: 1632090851, name: "sys_sendto", fd: 4}},
		{"   nsd: server 1-18901   (  18901) [001] .....  1632.093394: sys_recvfrom -> 0x20",
			traceEvent{comm: "nsd: server 1", tid: 18901, tgid: 18901, at: 1632093394, name: "sys_recvfrom", exit: true, ret: 32}},
		{"   nsd: server 2-18902   (-------) [000] .....  1632.093405: sys_recvfrom -> 0xfffffffffffffff5",
			traceEvent{comm: "nsd: server 2", tid: 18902, at: 1632093405, name: "sys_recvfrom", exit: true, ret: -11}},
		{"   dnsbench-main-11314   [000] .....  1072.650265: sys_sendmmsg(fd: 0xb, mmsg: 0x38ad225c0d80, vlen: 5, flags: 0x40)",
			traceEvent{comm: "dnsbench-main", tid: 11314, at: 1072650265, name: "sys_sendmmsg", vlen: 5}},
	}
	for _, c := range cases {
		got, ok := parseTraceLine([]byte(c.line))
		if !ok {
			t.Errorf("%q: not read", c.line)
			continue
		}
		// The trace's seconds become µs: compare them to the µs, not bit for bit.
		if d := got.at - c.want.at; d > 0.5 || d < -0.5 {
			t.Errorf("%q: at %f, want %f", c.line, got.at, c.want.at)
		}
		got.at = c.want.at
		if got != c.want {
			t.Errorf("%q:\n got %+v\nwant %+v", c.line, got, c.want)
		}
	}
	for _, bad := range []string{"", "# tracer: nop", "  <idle>-0  [000] d..2.  1.0: sched_switch: prev_comm=x", "x-1 [000] .... 1.0: sys_recvfrom -> nope"} {
		if ev, ok := parseTraceLine([]byte(bad)); ok {
			t.Errorf("%q read as %+v, want refused", bad, ev)
		}
	}
}

// stageTrace is three queries. dnsperf (process 100) sends them from thread 101, q0 and q2 on
// socket 0xe, q1 on 0xf, after a send to a netlink socket and with a failed send between q0 and
// q1. The server (process 200) reads q0 on thread 201 (whose process the trace does not know
// yet) and q1 and q2 on thread 202 with one recvmmsg; 202's sendmmsg of two replies sends one
// (q1); 201 replies to q0; thread 203, which read nothing (a goroutine that moved), sends q2's
// reply. dnsperf's thread 102 receives q1 on 0xf, then q0 and q2 on 0xe. Another process's
// system calls are in between.
const stageTrace = `# tracer: nop
#
       dnsperf-101   (    100) [000] .....  10.000000: sys_sendto(fd: 4, buff: 0x1, len: 0x14, flags: 0, addr: 0x2, addr_len: 0xc)
       dnsperf-101   (    100) [000] .....  10.000001: sys_sendto -> 0x14
       dnsperf-101   (    100) [000] .....  10.000100: sys_sendto(fd: 0xe, buff: 0x1, len: 0x1f, flags: 0, addr: 0x2, addr_len: 0x10)
    containerd-300   (    300) [001] .....  10.000105: sys_recvfrom -> 0x40
       dnsperf-101   (    100) [000] .....  10.000110: sys_sendto -> 0x1f
       dnsperf-101   (    100) [000] .....  10.000120: sys_sendto(fd: 0xf, buff: 0x1, len: 0x1f, flags: 0, addr: 0x2, addr_len: 0x10)
       dnsperf-101   (    100) [000] .....  10.000125: sys_sendto -> 0xfffffffffffffff5
       dnsperf-101   (    100) [000] .....  10.000130: sys_sendto(fd: 0xf, buff: 0x1, len: 0x1f, flags: 0, addr: 0x2, addr_len: 0x10)
       dnsperf-101   (    100) [000] .....  10.000135: sys_sendto -> 0x1f
       dnsperf-101   (    100) [000] .....  10.000136: sys_sendto(fd: 0xe, buff: 0x1, len: 0x20, flags: 0, addr: 0x2, addr_len: 0x10)
       dnsperf-101   (    100) [000] .....  10.000138: sys_sendto -> 0x20
   serve-201   (-------) [001] .....  10.000140: sys_recvfrom -> 0x1f
   serve-202   (    200) [001] .....  10.000142: sys_recvmmsg -> 0x2
   serve-202   (    200) [001] .....  10.000145: sys_recvmmsg -> 0xfffffffffffffff5
   serve-202   (    200) [001] .....  10.000150: sys_sendmmsg(fd: 0xb, mmsg: 0x3, vlen: 2, flags: 0x40)
    containerd-300   (    300) [001] .....  10.000151: sys_sendto(fd: 9, buff: 0x1, len: 0x1, flags: 0, addr: 0x2, addr_len: 0x10)
   serve-202   (    200) [001] .....  10.000152: sys_sendmmsg -> 0x1
   serve-201   (    200) [000] .....  10.000155: sys_sendto(fd: 0xb, buff: 0x1, len: 0x52, flags: 0, addr: 0x2, addr_len: 0x10)
   serve-201   (    200) [000] .....  10.000156: sys_sendto -> 0x52
   serve-203   (    200) [001] .....  10.000160: sys_sendmmsg(fd: 0xb, mmsg: 0x3, vlen: 1, flags: 0x40)
   serve-203   (    200) [001] .....  10.000161: sys_sendmmsg -> 0x1
       dnsperf-102   (    100) [001] .....  10.000165: sys_recvfrom(fd: 0xf, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000166: sys_recvfrom -> 0x52
       dnsperf-102   (    100) [001] .....  10.000170: sys_recvfrom(fd: 0xe, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000171: sys_recvfrom -> 0x52
       dnsperf-102   (    100) [001] .....  10.000180: sys_recvfrom(fd: 0xe, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000181: sys_recvfrom -> 0xfffffffffffffff5
       dnsperf-102   (    100) [001] .....  10.000190: sys_recvfrom(fd: 0xe, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000200: sys_recvfrom -> 0x52
`

var stageServer = map[int]bool{200: true, 201: true, 202: true, 203: true}

// wantMoments fails unless qs are the queries whose moments are want, in µs after 10 s.
func wantMoments(t *testing.T, qs []stageQuery, want [][4]float64) {
	t.Helper()
	if len(qs) != len(want) {
		t.Fatalf("%d queries, want %d: %+v", len(qs), len(want), qs)
	}
	for i, q := range qs {
		got := [4]float64{q.sent - 10e6, q.read - 10e6, q.replied - 10e6, q.received - 10e6}
		for k := range got {
			if d := got[k] - want[i][k]; d > 0.5 || d < -0.5 {
				t.Fatalf("q%d moments = %v µs after 10 s, want %v", i, got, want[i])
			}
		}
	}
}

func TestEveryQuerysFourMomentsAreFollowedThroughThreadsSocketsAndPartialSends(t *testing.T) {
	qs, byOrder, err := pairStages(strings.NewReader(stageTrace), stageServer)
	if err != nil || byOrder {
		t.Fatalf("pairStages: by order %v, %v; want each query followed", byOrder, err)
	}
	// Sent (at the send's entry), read, replied (at the send's entry), received.
	wantMoments(t, qs, [][4]float64{{100, 140, 155, 171}, {130, 142, 150, 166}, {136, 142, 160, 200}})
	r := summarize("nsd", qs, false)
	// Stages: send→read 40, 12, 6; read→reply 15, 8, 18; reply→receive 16, 16, 40; end to end
	// 71, 36, 64. With three queries p50 is the second smallest, p90 and p99 the largest.
	round := func(p [3]float64) [3]float64 {
		for i := range p {
			p[i] = float64(int(p[i] + 0.5))
		}
		return p
	}
	if r.queries != 3 || round(r.toRead) != [3]float64{12, 40, 40} || round(r.toReply) != [3]float64{15, 18, 18} ||
		round(r.toReceive) != [3]float64{16, 40, 40} || round(r.total) != [3]float64{64, 71, 71} {
		t.Fatalf("stages = %+v", r)
	}
}

func TestStagesThatDoNotPairUpAreRefusedWithWhatWasMissing(t *testing.T) {
	// Without the server's ids no read or reply is the server's: dnsperf's first receive has no
	// reply sent to its socket.
	_, _, err := pairStages(strings.NewReader(stageTrace), map[int]bool{})
	if !errors.Is(err, errUnpaired) || !strings.Contains(err.Error(), "dnsperf received a reply on socket 15") ||
		!strings.Contains(err.Error(), "by order: 3 sent, 0 read, 0 replied, 3 received") {
		t.Fatalf("err = %v, want the reply nobody sent", err)
	}
	// Without its last line q2's reply is never received.
	cut := stageTrace[:strings.LastIndex(strings.TrimSuffix(stageTrace, "\n"), "\n")+1]
	_, _, err = pairStages(strings.NewReader(cut), stageServer)
	if !errors.Is(err, errUnpaired) || !strings.Contains(err.Error(), "of 3 queries dnsperf sent, 0 were not read, 0 read and not replied to, 1 replied to and not received") {
		t.Fatalf("err = %v, want the counts", err)
	}
	// A server that read more than was sent.
	extra := stageTrace + "   serve-202   (    200) [001] .....  10.000300: sys_recvfrom -> 0x1f\n"
	if _, _, err := pairStages(strings.NewReader(extra), stageServer); !errors.Is(err, errUnpaired) || !strings.Contains(err.Error(), "read more datagrams than dnsperf had sent (3)") {
		t.Fatalf("err = %v, want the extra read", err)
	}
}

// fakeTracefs makes a directory with the files the tracer writes and reads.
func fakeTracefs(t *testing.T, overrun string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"tracing_on":          "0\n",
		"trace":               stageTrace,
		"buffer_size_kb":      "7 (expanded: 1408)\n",
		"options/record-tgid": "0\n",
		"per_cpu/cpu0/stats":  "entries: 12\noverrun: 0\ncommit overrun: 0\n",
		"per_cpu/cpu1/stats":  "entries: 4\noverrun: " + overrun + "\ncommit overrun: 0\n",
	}
	for _, e := range stageEvents {
		files["events/syscalls/"+e+"/enable"] = "0\n"
		files["events/syscalls/"+e+"/filter"] = "none\n"
	}
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := tracefs
	tracefs = root
	t.Cleanup(func() { tracefs = old })
	return root
}

func read(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTheTracerSwitchesItsEventsOnAndLeavesTheKernelAsItFoundIt(t *testing.T) {
	root := fakeTracefs(t, "0")
	tr, err := newStageTracer()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.start(); err != nil {
		t.Fatal(err)
	}
	if read(t, root, "tracing_on") != "1" || read(t, root, "options/record-tgid") != "1" || read(t, root, "buffer_size_kb") != strconv.Itoa(traceBufferKB()) {
		t.Fatal("start did not switch tracing on with a large buffer and thread group ids")
	}
	for _, e := range stageEvents {
		if read(t, root, "events/syscalls/"+e+"/enable") != "1" {
			t.Fatalf("%s not enabled", e)
		}
	}
	// Only the receives that returned data are recorded.
	if f := read(t, root, "events/syscalls/sys_exit_recvfrom/filter"); f != "ret > 0" {
		t.Fatalf("sys_exit_recvfrom filter %q, want ret > 0", f)
	}
	// A real trace file is cleared by start; the fake one was emptied: give it the trace.
	if err := os.WriteFile(filepath.Join(root, "trace"), []byte(stageTrace), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := tr.stop()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != stageTrace {
		t.Fatalf("stop returned %d bytes, want the trace", len(b))
	}
	// The buffer read "7 (expanded: 1408)": 1408 KB is what the kernel gives it on first use.
	if read(t, root, "tracing_on") != "0" || read(t, root, "options/record-tgid") != "0" || read(t, root, "buffer_size_kb") != "1408" {
		t.Fatalf("stop left tracing_on %s, record-tgid %s, buffer %s KB; want 0, 0, 1408", read(t, root, "tracing_on"), read(t, root, "options/record-tgid"), read(t, root, "buffer_size_kb"))
	}
	for _, e := range stageEvents {
		if read(t, root, "events/syscalls/"+e+"/enable") != "0" {
			t.Fatalf("%s left enabled", e)
		}
	}
	// Writing 0 clears a filter (the kernel then reads "none").
	if f := read(t, root, "events/syscalls/sys_exit_recvmmsg/filter"); f != "0" {
		t.Fatalf("sys_exit_recvmmsg filter left %q, want cleared", f)
	}
}

func TestTheTracerGivesBackATracingStateItDidNotSetUp(t *testing.T) {
	// Tracing on (the kernel's default), thread group ids recorded, one of the events already
	// enabled by someone else, a buffer of 4096 KB: after a run, and after a start that fails,
	// each as it was.
	for _, fail := range []bool{false, true} {
		root := fakeTracefs(t, "0")
		found := map[string]string{
			"tracing_on":          "1",
			"options/record-tgid": "1",
			"events/syscalls/sys_exit_recvmsg/enable":  "1",
			"events/syscalls/sys_exit_recvfrom/filter": "ret > 10",
			"buffer_size_kb": "4096",
		}
		for name, v := range found {
			if err := os.WriteFile(filepath.Join(root, name), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if fail {
			// A directory in place of the trace: start cannot clear it, once it has switched
			// tracing off.
			if err := os.Remove(filepath.Join(root, "trace")); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(root, "trace"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		tr := &stageTracer{root: root}
		if err := tr.start(); fail {
			if err == nil {
				t.Fatal("start cleared a trace that is a directory")
			}
		} else {
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.stop(); err != nil {
				t.Fatal(err)
			}
		}
		for name, want := range found {
			if got := read(t, root, name); got != want {
				t.Errorf("failed start %v: %s = %s, want %s as found", fail, name, got, want)
			}
		}
		for _, e := range stageEvents {
			name := "events/syscalls/" + e + "/enable"
			if _, ok := found[name]; ok {
				continue
			}
			if got := read(t, root, name); got != "0" {
				t.Errorf("failed start %v: %s = %s, want 0", fail, name, got)
			}
		}
	}
}

func TestAnOverflowedTraceIsRefused(t *testing.T) {
	root := fakeTracefs(t, "3")
	tr, err := newStageTracer()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.stop(); err == nil || !strings.Contains(err.Error(), "3 events lost") {
		t.Fatalf("stop = %v, want the overflow", err)
	}
	if read(t, root, "tracing_on") != "0" {
		t.Fatal("tracing left on")
	}
}

func TestATraceThatDroppedEventsIsRefused(t *testing.T) {
	// With options/overwrite off, a full buffer drops new events instead of overwriting.
	root := fakeTracefs(t, "0")
	stats := "entries: 4\noverrun: 0\ncommit overrun: 0\nbytes: 0\noldest event ts: 0.0\nnow ts: 1.0\ndropped events: 5\nread events: 0\n"
	if err := os.WriteFile(filepath.Join(root, "per_cpu/cpu1/stats"), []byte(stats), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := &stageTracer{root: root}
	if err := tr.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.stop(); err == nil || !strings.Contains(err.Error(), "5 events lost") {
		t.Fatalf("stop = %v, want the dropped events", err)
	}
}

func TestWithoutTracefsStagesSaysWhatItNeeds(t *testing.T) {
	old := tracefs
	tracefs = filepath.Join(t.TempDir(), "absent")
	t.Cleanup(func() { tracefs = old })
	_, err := newStageTracer()
	if err == nil || !strings.Contains(err.Error(), "needs root and tracefs: mount -t tracefs nodev") {
		t.Fatalf("err = %v, want what -stages needs", err)
	}
}

// swappedReads is two queries read by two server threads at once, their read exits recorded in
// the other order than the socket gave them out: thread 201 got q1 (socket 0xf) and 202 got q0
// (socket 0xe), so 201's reply reaches 0xf first.
const swappedReads = `       dnsperf-101   (    100) [000] .....  10.000100: sys_sendto(fd: 0xe, buff: 0x1, len: 0x1f, flags: 0, addr: 0x2, addr_len: 0x10)
       dnsperf-101   (    100) [000] .....  10.000101: sys_sendto -> 0x1f
       dnsperf-101   (    100) [000] .....  10.000110: sys_sendto(fd: 0xf, buff: 0x1, len: 0x1f, flags: 0, addr: 0x2, addr_len: 0x10)
       dnsperf-101   (    100) [000] .....  10.000111: sys_sendto -> 0x1f
   serve-201   (    200) [001] .....  10.000140: sys_recvfrom -> 0x1f
   serve-202   (    200) [000] .....  10.000141: sys_recvfrom -> 0x1f
   serve-201   (    200) [001] .....  10.000150: sys_sendto(fd: 0xb, buff: 0x1, len: 0x52, flags: 0, addr: 0x2, addr_len: 0x10)
   serve-201   (    200) [001] .....  10.000151: sys_sendto -> 0x52
       dnsperf-102   (    100) [001] .....  10.000154: sys_recvfrom(fd: 0xf, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000155: sys_recvfrom -> 0x52
   serve-202   (    200) [000] .....  10.000160: sys_sendto(fd: 0xb, buff: 0x1, len: 0x52, flags: 0, addr: 0x2, addr_len: 0x10)
   serve-202   (    200) [000] .....  10.000161: sys_sendto -> 0x52
       dnsperf-102   (    100) [001] .....  10.000164: sys_recvfrom(fd: 0xe, ubuf: 0x1, size: 0x10000, flags: 0, addr: 0x0, addr_len: 0x0)
       dnsperf-102   (    100) [001] .....  10.000165: sys_recvfrom -> 0x52
`

func TestReadsToldInTheOtherOrderFallBackToPairingByOrder(t *testing.T) {
	qs, byOrder, err := pairStages(strings.NewReader(swappedReads), stageServer)
	if err != nil || !byOrder {
		t.Fatalf("pairStages: by order %v, %v; want paired by order", byOrder, err)
	}
	wantMoments(t, qs, [][4]float64{{100, 140, 150, 155}, {110, 141, 160, 165}})
	var out strings.Builder
	reportStages(&out, options{load: 1000}, []stageResult{summarize("knot", qs, true)})
	if !strings.Contains(out.String(), "paired by order: several threads read the socket") {
		t.Fatalf("report:\n%s\nwant the pairing said", out.String())
	}
}
