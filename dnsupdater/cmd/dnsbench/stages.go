package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

// -stages: where a query's time goes. One more run per server at the common load, with the
// kernel tracing four moments of every query through its system calls (tracefs): dnsperf sends
// it (sendto, counted when it returns a length), the server reads it (recvfrom, recvmsg or recvmmsg), the server sends the reply
// (sendto, sendmsg or sendmmsg), dnsperf receives the reply (recvfrom). A UDP socket delivers in
// order and every server here answers in the order it reads, so the n-th event of each kind
// belongs to the n-th query. The traced run is not one of the measured rounds: tracing costs
// every system call a little, and the rounds' figures stay untraced.

// tracefs is where the kernel's tracing file system is mounted.
var tracefs = "/sys/kernel/tracing"

// stageEvents are the system-call tracepoints -stages enables.
var stageEvents = []string{
	"sys_enter_sendto", "sys_exit_sendto", "sys_enter_sendmsg", "sys_enter_sendmmsg",
	"sys_exit_recvfrom", "sys_exit_recvmsg", "sys_exit_recvmmsg",
}

// traceBufferKB is the per-CPU ring buffer -stages asks for: a 10 s run at 40,000 queries a
// second fits.
const traceBufferKB = 131072

// stageTracer switches the tracepoints on and off and reads what they recorded.
type stageTracer struct {
	root string
	// saved is what start found in the files it changes (relative to root), restored by off.
	saved map[string]string
}

// changed are the files start writes and off gives back what start found in them, tracing_on
// last.
func changed() []string {
	files := []string{"buffer_size_kb", "options/record-tgid"}
	for _, e := range stageEvents {
		files = append(files, "events/syscalls/"+e+"/enable")
	}
	return append(files, "tracing_on")
}

// savedValue is what to write back to rel for the content b read from it, or "" when it
// cannot be written back: the buffer's size before first use reads "7 (expanded: 1408)", 1408
// being the size the kernel would give it and the one to restore (7 would leave later tracing
// a 7 KB buffer); it reads "X" when the CPUs' sizes differ. An event's enable may carry a
// "*" (soft mode): what is written back is its 0 or 1.
func savedValue(rel string, b []byte) string {
	v := strings.TrimSpace(string(b))
	if rel == "buffer_size_kb" {
		if _, exp, ok := strings.Cut(v, "(expanded: "); ok {
			v = strings.TrimSuffix(exp, ")")
		}
		if _, err := strconv.Atoi(v); err != nil {
			return ""
		}
		return v
	}
	if strings.HasPrefix(v, "1") {
		return "1"
	}
	return "0"
}

// newStageTracer checks that the tracepoints can be used, before anything is measured.
func newStageTracer() (*stageTracer, error) {
	t := &stageTracer{root: tracefs}
	for _, e := range stageEvents {
		f := filepath.Join(t.root, "events", "syscalls", e, "enable")
		if err := writable(f); err != nil {
			return nil, fmt.Errorf("-stages: %s: %w (needs root and tracefs: mount -t tracefs nodev %s)", f, err, t.root)
		}
	}
	return t, nil
}

// writable returns why the file f cannot be opened for writing, or nil.
func writable(f string) error {
	fd, err := os.OpenFile(f, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return fd.Close()
}

func (t *stageTracer) write(rel, v string) error {
	if err := os.WriteFile(filepath.Join(t.root, rel), []byte(v), 0); err != nil {
		return fmt.Errorf("-stages: write %s: %w", rel, err)
	}
	return nil
}

// start clears the buffer and switches the tracepoints on.
func (t *stageTracer) start() error {
	t.saved = map[string]string{}
	for _, rel := range changed() {
		b, err := os.ReadFile(filepath.Join(t.root, rel))
		if err != nil {
			return fmt.Errorf("-stages: %w", err)
		}
		if v := savedValue(rel, b); v != "" {
			t.saved[rel] = v
		}
	}
	steps := [][2]string{
		{"tracing_on", "0"}, {"trace", ""}, {"buffer_size_kb", strconv.Itoa(traceBufferKB)},
		{"options/record-tgid", "1"},
	}
	for _, e := range stageEvents {
		steps = append(steps, [2]string{"events/syscalls/" + e + "/enable", "1"})
	}
	steps = append(steps, [2]string{"tracing_on", "1"})
	for _, s := range steps {
		if err := t.write(s[0], s[1]); err != nil {
			t.off()
			return err
		}
	}
	return nil
}

// off switches tracing off and gives every file start changed what start found in it.
func (t *stageTracer) off() {
	_ = t.write("tracing_on", "0")
	for _, rel := range changed() {
		if v, ok := t.saved[rel]; ok {
			_ = t.write(rel, v)
		}
	}
}

// stop switches the tracepoints off and returns what they recorded, or an error when the
// buffer overflowed.
func (t *stageTracer) stop() ([]byte, error) {
	_ = t.write("tracing_on", "0")
	defer t.off()
	cpus, _ := filepath.Glob(filepath.Join(t.root, "per_cpu", "cpu*", "stats"))
	for _, f := range cpus {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// overrun: events overwritten (options/overwrite, the default); dropped events: new
		// events refused when the buffer does not overwrite.
		if n := statField(b, "overrun:") + statField(b, "dropped events:"); n > 0 {
			return nil, fmt.Errorf("the trace buffer overflowed (%d events lost): use a shorter -duration", n)
		}
	}
	b, err := os.ReadFile(filepath.Join(t.root, "trace"))
	if err != nil {
		return nil, fmt.Errorf("-stages: read trace: %w", err)
	}
	_ = t.write("trace", "")
	return b, nil
}

// statField reads the number after name in a per-CPU stats file.
func statField(b []byte, name string) int {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

// stageTimes are the moments of every query in order, in µs of the trace clock.
type stageTimes struct {
	sent, read, replied, received []float64
}

// parseStages reads a trace: dnsperf's lines (its command name) give the sends and receives,
// the lines of server (thread or process ids) the reads and replies. Other lines are ignored.
func parseStages(r io.Reader, server map[int]bool) stageTimes {
	var st stageTimes
	// sending holds when each dnsperf thread entered sendto: a send counts once it returned a
	// length (a failed send reaches no server).
	sending := map[int]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		ev, ok := parseTraceLine(line)
		if !ok {
			continue
		}
		switch {
		case ev.comm == "dnsperf":
			switch {
			case ev.name == "sys_sendto" && !ev.exit && ev.inet:
				sending[ev.tid] = ev.at
			case ev.name == "sys_sendto" && ev.exit:
				if at, ok := sending[ev.tid]; ok && ev.ret > 0 {
					st.sent = append(st.sent, at)
				}
				delete(sending, ev.tid)
			case ev.name == "sys_recvfrom" && ev.exit && ev.ret > 0:
				st.received = append(st.received, ev.at)
			}
		case server[ev.tid] || server[ev.tgid]:
			switch {
			case ev.exit && ev.ret > 0 && (ev.name == "sys_recvfrom" || ev.name == "sys_recvmsg"):
				st.read = append(st.read, ev.at)
			case ev.exit && ev.ret > 0 && ev.name == "sys_recvmmsg":
				for range ev.ret {
					st.read = append(st.read, ev.at)
				}
			case !ev.exit && (ev.name == "sys_sendto" || ev.name == "sys_sendmsg"):
				st.replied = append(st.replied, ev.at)
			case !ev.exit && ev.name == "sys_sendmmsg":
				for range ev.vlen {
					st.replied = append(st.replied, ev.at)
				}
			}
		}
	}
	return st
}

// traceEvent is one line of the trace.
type traceEvent struct {
	comm      string
	tid, tgid int
	at        float64 // µs
	name      string
	exit      bool
	ret       int // an exit's return value (negative: an error)
	vlen      int // sendmmsg's vlen
	// inet is set on a sendto to an IPv4 or IPv6 address (dnsperf also sends to a netlink
	// socket as it starts).
	inet bool
}

// parseTraceLine reads "COMM-TID (TGID) [CPU] FLAGS SECONDS: sys_NAME(args)" or
// "...: sys_NAME -> 0xRET"; the TGID column is there with record-tgid and may read "-------".
func parseTraceLine(line []byte) (traceEvent, bool) {
	var ev traceEvent
	s := string(line)
	i := strings.Index(s, ": sys_")
	if i < 0 {
		return ev, false
	}
	head, body := s[:i], s[i+2:]
	// The time stamp is the last field of head, the CPU ("[001]") the first field that opens
	// with a bracket after the task: the command name may hold spaces ("nsd: server 1").
	sp := strings.LastIndexByte(head, ' ')
	secs, err := strconv.ParseFloat(head[sp+1:], 64)
	if err != nil {
		return ev, false
	}
	ev.at = secs * 1e6
	cpu := strings.LastIndex(head, " [")
	if cpu < 0 {
		return ev, false
	}
	task := strings.TrimSpace(head[:cpu])
	if strings.HasSuffix(task, ")") {
		open := strings.LastIndexByte(task, '(')
		if open < 0 {
			return ev, false
		}
		ev.tgid, _ = strconv.Atoi(strings.TrimSpace(task[open+1 : len(task)-1])) // "-------": unknown
		task = strings.TrimSpace(task[:open])
	}
	dash := strings.LastIndexByte(task, '-')
	if dash < 0 {
		return ev, false
	}
	ev.comm = task[:dash]
	if ev.tid, err = strconv.Atoi(task[dash+1:]); err != nil {
		return ev, false
	}
	if name, ret, ok := strings.Cut(body, " -> "); ok {
		ev.name, ev.exit = name, true
		v, err := strconv.ParseUint(strings.TrimSpace(ret), 0, 64)
		if err != nil {
			return ev, false
		}
		ev.ret = int(int64(v))
		return ev, true
	}
	name, args, ok := strings.Cut(body, "(")
	if !ok {
		return ev, false
	}
	ev.name = name
	if ev.name == "sys_sendto" {
		_, v, _ := strings.Cut(args, "addr_len: ")
		v, _, _ = strings.Cut(v, ")")
		n, err := strconv.ParseInt(v, 0, 32)
		ev.inet = err == nil && (n == unix.SizeofSockaddrInet4 || n == unix.SizeofSockaddrInet6)
	}
	if ev.name == "sys_sendmmsg" {
		_, v, ok := strings.Cut(args, "vlen: ")
		if !ok {
			return ev, false
		}
		v, _, _ = strings.Cut(v, ",")
		n, err := strconv.ParseInt(v, 0, 32)
		if err != nil || n < 0 {
			return ev, false
		}
		ev.vlen = int(n)
	}
	return ev, true
}

// stageResult is one server's stages: p50, p90 and p99 of each, in µs.
type stageResult struct {
	name                              string
	queries                           int
	toRead, toReply, toReceive, total [3]float64
	skipped                           string
}

// errUnpaired is returned when the four moments do not count the same queries.
var errUnpaired = errors.New("the events do not pair up")

// summarize pairs the n-th moments of each kind and returns the percentiles of each stage.
func summarize(name string, st stageTimes) (stageResult, error) {
	n := len(st.sent)
	if n == 0 || len(st.read) != n || len(st.replied) != n || len(st.received) != n {
		return stageResult{}, fmt.Errorf("%w: %d sent, %d read, %d replied, %d received (a server that reads or replies with other system calls is not traced)",
			errUnpaired, len(st.sent), len(st.read), len(st.replied), len(st.received))
	}
	r := stageResult{name: name, queries: n}
	stage := func(from, to []float64) [3]float64 {
		d := make([]float64, n)
		for i := range n {
			d[i] = to[i] - from[i]
		}
		slices.Sort(d)
		return [3]float64{d[n/2], d[n*90/100], d[n*99/100]}
	}
	r.toRead = stage(st.sent, st.read)
	r.toReply = stage(st.read, st.replied)
	r.toReceive = stage(st.replied, st.received)
	r.total = stage(st.sent, st.received)
	return r, nil
}

// serverTasks returns the process and thread ids of pid and its live descendants.
func serverTasks(pid int) map[int]bool {
	ids := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if ids[p] {
			return
		}
		ids[p] = true
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				ids[tid] = true
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p, t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					walk(c)
				}
			}
		}
	}
	walk(pid)
	return ids
}

// reportStages writes the stage table.
func reportStages(out io.Writer, o options, rs []stageResult) {
	fmt.Fprintf(out, "where a query's time goes at %.0f qps (-stages: one more run per server, its system calls traced; not one of the rounds above), µs p50 · p90 · p99:\n\n", o.load)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tqueries\tdnsperf send → server read\tserver read → reply\treply → dnsperf receive\tend to end")
	for _, r := range rs {
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tskipped: %s\n", r.name, r.skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.name, r.queries, trio(r.toRead), trio(r.toReply), trio(r.toReceive), trio(r.total))
	}
	tw.Flush()
}

// trio prints a stage's p50, p90 and p99.
func trio(p [3]float64) string {
	return fmt.Sprintf("%.0f · %.0f · %.0f", p[0], p[1], p[2])
}
