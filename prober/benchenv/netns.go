package benchenv

import "strings"

// Netns is where Isolate left a benchmark.
type Netns struct {
	// Done: the benchmark ran in a process of its own in a namespace of its own, which ended
	// with Status; this process's part is to exit with it.
	Done   bool
	Status int
	// Own: this process is that run, in a network namespace of its own with only its loopback
	// up.
	Own bool
	// Why says why the run is in the host's namespace, when it is neither Done nor Own.
	Why string
}

// Host is a run in the host's network namespace, for the reason why.
func Host(why string) Netns { return Netns{Why: why} }

// String says in one line where the run is, for the first line of a benchmark's report.
func (n Netns) String() string {
	if n.Own {
		return "a network namespace of its own, only its loopback up (no firewall rule or connection tracking of the host's on the path)"
	}
	return "the host's network namespace (" + n.Why + ")"
}

// markEnv is the environment variable with which Isolate marks the run it starts in a namespace
// of its own, for the program name: DNSBENCH_NETNS for dnsbench. Its value names the namespace
// the run left.
func markEnv(name string) string { return strings.ToUpper(name) + "_NETNS" }
