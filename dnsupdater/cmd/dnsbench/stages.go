package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// -stages: where a query's time goes. One more run per server at the common load, with the
// kernel tracing four moments of every query through its system calls (tracefs): dnsperf sends
// it (sendto), the server reads it (recvfrom, recvmsg or recvmmsg), the server sends the reply
// (sendto, sendmsg or sendmmsg), dnsperf receives the reply (recvfrom). stagePairer says how the
// moments are tied to one query. The traced run is not one of the measured rounds: tracing
// costs every system call a little, and the rounds' figures stay untraced.

// sizeofSockaddrInet4 and sizeofSockaddrInet6 are the addr_len of a sendto to an IPv4 or an IPv6
// address: Linux's struct sockaddr_in and sockaddr_in6, as the traced kernel is Linux.
const sizeofSockaddrInet4, sizeofSockaddrInet6 = 16, 28

// tracefs is where the kernel's tracing file system is mounted.
var tracefs = "/sys/kernel/tracing"

// stageEvents are the system-call tracepoints -stages enables.
var stageEvents = []string{
	"sys_enter_sendto", "sys_exit_sendto", "sys_enter_sendmsg", "sys_exit_sendmsg",
	"sys_enter_sendmmsg", "sys_exit_sendmmsg", "sys_enter_recvfrom", "sys_exit_recvfrom",
	"sys_exit_recvmsg", "sys_exit_recvmmsg",
}

// traceBufferKB is the ring buffer -stages asks for on each CPU: 256 MB in all (a 10 s run at
// 40,000 queries a second fits in the events of the CPUs dnsperf and a server use), at least
// 16 MB a CPU.
func traceBufferKB() int { return max(262144/runtime.NumCPU(), 16384) }

// stageTracer switches the tracepoints on and off and reads what they recorded.
type stageTracer struct {
	root string
	// saved is what start found in the files it changes (relative to root), restored by off.
	saved map[string]string
}

// stageFilters keep only the receives that returned data: a server whose threads all wake for
// each datagram (NSD, Knot) and dnsperf's receiving thread fail many more receives than they
// make, and at 60,000 queries a second those filled the buffer.
var stageFilters = map[string]string{
	"sys_exit_recvfrom": "ret > 0", "sys_exit_recvmsg": "ret > 0", "sys_exit_recvmmsg": "ret > 0",
}

// changed are the files start writes and off gives back what start found in them, tracing_on
// last.
func changed() []string {
	files := []string{"buffer_size_kb", "options/record-tgid"}
	for _, e := range stageEvents {
		if stageFilters[e] != "" {
			files = append(files, "events/syscalls/"+e+"/filter")
		}
		files = append(files, "events/syscalls/"+e+"/enable")
	}
	return append(files, "tracing_on")
}

// savedValue is what to write back to rel for the content b read from it, or "" when it
// cannot be written back: the buffer's size before first use reads "7 (expanded: 1408)", 1408
// being the size the kernel would give it and the one to restore (7 would leave later tracing
// a 7 KB buffer); it reads "X" when the CPUs' sizes differ. An event's filter reads "none"
// when it has none, cleared by writing 0. An event's enable may carry a "*" (soft mode): what
// is written back is its 0 or 1.
func savedValue(rel string, b []byte) string {
	v := strings.TrimSpace(string(b))
	if strings.HasSuffix(rel, "/filter") {
		if v == "none" || v == "" {
			return "0"
		}
		return v
	}
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
		{"tracing_on", "0"}, {"trace", ""}, {"buffer_size_kb", strconv.Itoa(traceBufferKB())},
		{"options/record-tgid", "1"},
	}
	for _, e := range stageEvents {
		if f := stageFilters[e]; f != "" {
			steps = append(steps, [2]string{"events/syscalls/" + e + "/filter", f})
		}
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

// stageQuery is one query's four moments, in µs of the trace clock, and dnsperf's socket that
// sent it.
type stageQuery struct {
	sent, read, replied, received float64
	fd                            int
	// done is how many of the four moments were seen.
	done int
}

// stagePairer follows every query through the trace. dnsperf has one sending thread and the
// server one socket, which delivers in order: the n-th datagram a server thread reads is the
// n-th query sent. A server thread replies to what it read in the order it read it (a reply
// sent by a thread that read nothing is the oldest unanswered query of its process: a Go
// goroutine may read on one thread and reply on another). dnsperf's socket delivers replies
// in the order they were sent to it, so the n-th reply received on a socket is the n-th sent
// there.
type stagePairer struct {
	qs   []stageQuery
	next int // the next query a server read takes
	// unanswered are the queries each server thread read and has not replied to, oldest first;
	// process is each server thread's process (0: not known).
	unanswered map[int][]int
	process    map[int]int
	// sending is the query each dnsperf thread's sendto is sending; replying the queries each
	// server thread's send is sending, confirmed when it returns; receiving the socket each
	// dnsperf thread's recvfrom reads.
	sending   map[int]int
	replying  map[int][]int
	receiving map[int]int
	// arriving are the queries whose replies were sent to each dnsperf socket, in that order.
	arriving map[int][]int
	err      error
}

func newStagePairer() *stagePairer {
	return &stagePairer{unanswered: map[int][]int{}, process: map[int]int{},
		sending: map[int]int{}, replying: map[int][]int{}, receiving: map[int]int{}, arriving: map[int][]int{}}
}

func (p *stagePairer) fail(format string, a ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: "+format, append([]any{errUnpaired}, a...)...)
	}
}

// add takes one event of the trace, in time order; server says whether it is the server's.
func (p *stagePairer) add(ev traceEvent, server bool) {
	if p.err != nil {
		return
	}
	switch {
	case ev.comm == "dnsperf":
		p.client(ev)
	case server:
		if ev.tgid != 0 {
			p.process[ev.tid] = ev.tgid
		}
		p.serve(ev)
	}
}

func (p *stagePairer) client(ev traceEvent) {
	switch {
	case ev.name == "sys_sendto" && !ev.exit && ev.inet:
		p.qs = append(p.qs, stageQuery{sent: ev.at, fd: ev.fd, done: 1})
		p.sending[ev.tid] = len(p.qs) - 1
	case ev.name == "sys_sendto" && ev.exit:
		i, ok := p.sending[ev.tid]
		delete(p.sending, ev.tid)
		if !ok || ev.ret > 0 {
			return
		}
		// A failed send reached no server: forget it, unless something already counted it.
		if i != len(p.qs)-1 || p.next > i {
			p.fail("dnsperf's failed send at %.0f µs overlaps another", p.qs[i].sent)
			return
		}
		p.qs = p.qs[:i]
	case ev.name == "sys_recvfrom" && !ev.exit:
		p.receiving[ev.tid] = ev.fd
	case ev.name == "sys_recvfrom" && ev.exit:
		fd, ok := p.receiving[ev.tid]
		delete(p.receiving, ev.tid)
		if !ok || ev.ret <= 0 {
			return
		}
		q := p.arriving[fd]
		if len(q) == 0 {
			p.fail("dnsperf received a reply on socket %d at %.0f µs that no traced reply was sent to", fd, ev.at)
			return
		}
		i := q[0]
		p.arriving[fd] = q[1:]
		p.qs[i].received, p.qs[i].done = ev.at, 4
	}
}

func (p *stagePairer) serve(ev traceEvent) {
	switch ev.name {
	case "sys_recvfrom", "sys_recvmsg", "sys_recvmmsg":
		if !ev.exit {
			return
		}
		for range ev.datagrams() {
			if p.next >= len(p.qs) {
				p.fail("the server read more datagrams than dnsperf had sent (%d) at %.0f µs", len(p.qs), ev.at)
				return
			}
			p.qs[p.next].read, p.qs[p.next].done = ev.at, 2
			p.unanswered[ev.tid] = append(p.unanswered[ev.tid], p.next)
			p.next++
		}
	case "sys_sendto", "sys_sendmsg", "sys_sendmmsg":
		if !ev.exit {
			n := 1
			if ev.name == "sys_sendmmsg" {
				n = ev.vlen
			}
			for range n {
				i, ok := p.oldest(ev.tid)
				if !ok {
					p.fail("the server sent a reply at %.0f µs with no query read and unanswered", ev.at)
					return
				}
				p.qs[i].replied, p.qs[i].done = ev.at, 3
				p.arriving[p.qs[i].fd] = append(p.arriving[p.qs[i].fd], i)
				p.replying[ev.tid] = append(p.replying[ev.tid], i)
			}
			return
		}
		// The send returned: the replies it did not send go back to the front of the thread's
		// unanswered queries.
		sent := ev.datagrams()
		r := p.replying[ev.tid]
		delete(p.replying, ev.tid)
		if sent >= len(r) {
			return
		}
		for _, i := range r[sent:] {
			p.qs[i].replied, p.qs[i].done = 0, 2
			p.arriving[p.qs[i].fd] = slices.DeleteFunc(p.arriving[p.qs[i].fd], func(j int) bool { return j == i })
		}
		p.unanswered[ev.tid] = append(slices.Clone(r[sent:]), p.unanswered[ev.tid]...)
	}
}

// oldest takes the oldest unanswered query of server thread tid, or else of its process (or of
// any server thread when its process is not known).
func (p *stagePairer) oldest(tid int) (int, bool) {
	from := tid
	if len(p.unanswered[tid]) == 0 {
		from = -1
		for t, q := range p.unanswered {
			if len(q) == 0 || (p.process[tid] != 0 && p.process[t] != 0 && p.process[t] != p.process[tid]) {
				continue
			}
			if from < 0 || q[0] < p.unanswered[from][0] {
				from = t
			}
		}
		if from < 0 {
			return 0, false
		}
	}
	q := p.unanswered[from]
	p.unanswered[from] = q[1:]
	return q[0], true
}

// byOrder is the fallback pairing: the n-th moment of each kind belongs to the n-th query. It
// is what stagePairer does when one thread reads the socket. When several read it at once
// (NSD's two processes, Knot's two workers), two reads a microsecond apart can be recorded in
// the other order than the socket gave them out, so that each thread's replies are tied to the
// other's query: stagePairer then finds a reply received on a socket that no reply was sent to,
// and the stages are paired by order instead, which keeps each stage's times and may exchange
// them between neighbouring queries.
type byOrder struct {
	sent, read, replied, received []float64
	// sending and replying hold when a dnsperf or server thread entered its send.
	sending, replying map[int]float64
}

func (o *byOrder) add(ev traceEvent, server bool) {
	switch {
	case ev.comm == "dnsperf" && ev.name == "sys_sendto" && !ev.exit && ev.inet:
		o.sending[ev.tid] = ev.at
	case ev.comm == "dnsperf" && ev.name == "sys_sendto" && ev.exit:
		if at, ok := o.sending[ev.tid]; ok && ev.ret > 0 {
			o.sent = append(o.sent, at)
		}
		delete(o.sending, ev.tid)
	case ev.comm == "dnsperf" && ev.name == "sys_recvfrom" && ev.exit && ev.ret > 0:
		o.received = append(o.received, ev.at)
	case !server:
	case ev.exit && (ev.name == "sys_recvfrom" || ev.name == "sys_recvmsg" || ev.name == "sys_recvmmsg"):
		for range ev.datagrams() {
			o.read = append(o.read, ev.at)
		}
	case !ev.exit && (ev.name == "sys_sendto" || ev.name == "sys_sendmsg" || ev.name == "sys_sendmmsg"):
		o.replying[ev.tid] = ev.at
	case ev.exit && (ev.name == "sys_sendto" || ev.name == "sys_sendmsg" || ev.name == "sys_sendmmsg"):
		at, ok := o.replying[ev.tid]
		delete(o.replying, ev.tid)
		if !ok {
			return
		}
		for range ev.datagrams() {
			o.replied = append(o.replied, at)
		}
	}
}

// pairStages reads a trace: dnsperf's lines (its command name) give the sends and receives,
// the lines of server (thread or process ids) the reads and replies; other lines are ignored.
// It returns every query with its four moments, and whether they were paired by order
// (ordered, see byOrder), or why they could not be paired.
func pairStages(r io.Reader, server map[int]bool) (qs []stageQuery, ordered bool, err error) {
	p := newStagePairer()
	o := &byOrder{sending: map[int]float64{}, replying: map[int]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if ev, ok := parseTraceLine(line); ok {
			isServer := server[ev.tid] || server[ev.tgid]
			p.add(ev, isServer)
			o.add(ev, isServer)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read the trace: %w", err)
	}
	if err := p.check(); err == nil {
		return p.qs, false, nil
	} else if n := len(o.sent); n == 0 || len(o.read) != n || len(o.replied) != n || len(o.received) != n {
		return nil, false, fmt.Errorf("%w; by order: %d sent, %d read, %d replied, %d received", err, len(o.sent), len(o.read), len(o.replied), len(o.received))
	}
	qs = make([]stageQuery, len(o.sent))
	for i := range qs {
		qs[i] = stageQuery{sent: o.sent[i], read: o.read[i], replied: o.replied[i], received: o.received[i], done: 4}
	}
	return qs, true, nil
}

// check reports why the queries could not all be followed, or nil.
func (p *stagePairer) check() error {
	if p.err != nil {
		return p.err
	}
	var seen [5]int
	for _, q := range p.qs {
		seen[q.done]++
	}
	if len(p.qs) == 0 || seen[4] != len(p.qs) {
		return fmt.Errorf("%w: of %d queries dnsperf sent, %d were not read, %d read and not replied to, %d replied to and not received (a server that reads or replies through other system calls is not traced; lost queries are never received)",
			errUnpaired, len(p.qs), seen[1], seen[2], seen[3])
	}
	return nil
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
	fd        int // the socket of a sendto or recvfrom
	// inet is set on a sendto to an IPv4 or IPv6 address (dnsperf also sends to a netlink
	// socket as it starts).
	inet bool
}

// datagrams is how many datagrams a receive's exit returned or a send's exit sent: recvmmsg
// and sendmmsg return a count, the others a length (one datagram, or none on an error).
func (ev traceEvent) datagrams() int {
	n := max(ev.ret, 0)
	if ev.name != "sys_recvmmsg" && ev.name != "sys_sendmmsg" {
		n = min(n, 1)
	}
	return n
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
	if ev.name == "sys_sendto" || ev.name == "sys_recvfrom" {
		_, v, _ := strings.Cut(args, "fd: ")
		v, _, _ = strings.Cut(v, ",")
		n, err := strconv.ParseInt(v, 0, 32)
		if err != nil {
			return ev, false
		}
		ev.fd = int(n)
	}
	if ev.name == "sys_sendto" {
		_, v, _ := strings.Cut(args, "addr_len: ")
		v, _, _ = strings.Cut(v, ")")
		n, err := strconv.ParseInt(v, 0, 32)
		ev.inet = err == nil && (n == sizeofSockaddrInet4 || n == sizeofSockaddrInet6)
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
	// byOrder is set when the moments were paired by order (see byOrder).
	byOrder bool
	skipped string
}

// errUnpaired is returned when the four moments do not count the same queries.
var errUnpaired = errors.New("the events do not pair up")

// summarize returns the percentiles of each stage of qs, paired by order or not.
func summarize(name string, qs []stageQuery, byOrder bool) stageResult {
	n := len(qs)
	r := stageResult{name: name, queries: n, byOrder: byOrder}
	stage := func(of func(q stageQuery) float64) [3]float64 {
		d := make([]float64, n)
		for i, q := range qs {
			d[i] = of(q)
		}
		slices.Sort(d)
		return [3]float64{d[n/2], d[n*90/100], d[n*99/100]}
	}
	r.toRead = stage(func(q stageQuery) float64 { return q.read - q.sent })
	r.toReply = stage(func(q stageQuery) float64 { return q.replied - q.read })
	r.toReceive = stage(func(q stageQuery) float64 { return q.received - q.replied })
	r.total = stage(func(q stageQuery) float64 { return q.received - q.sent })
	return r
}

// serverTasks returns the process and thread ids of pid and its live descendants.
func serverTasks(pid int) map[int]bool {
	procs, threads := processTree(pid)
	ids := map[int]bool{}
	for _, id := range append(procs, threads...) {
		ids[id] = true
	}
	return ids
}

// reportStages writes the stage table.
func reportStages(out io.Writer, o options, rs []stageResult) {
	fmt.Fprintf(out, "where a query's time goes at %.0f qps (-stages: one more run per server, its system calls traced; not one of the rounds above), µs p50 · p90 · p99:\n\n", o.load)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tqueries\tdnsperf send → server read\tserver read → reply\treply → dnsperf receive\tend to end\tnote")
	for _, r := range rs {
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tskipped: %s\n", r.name, r.skipped)
			continue
		}
		note := ""
		if r.byOrder {
			note = "paired by order: several threads read the socket"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.name, r.queries, trio(r.toRead), trio(r.toReply), trio(r.toReceive), trio(r.total), note)
	}
	tw.Flush()
}

// trio prints a stage's p50, p90 and p99.
func trio(p [3]float64) string {
	return fmt.Sprintf("%.0f · %.0f · %.0f", p[0], p[1], p[2])
}
