// Command regionbench kills a region of N endpoints at once and brings it back, with every role
// of Detour in a process of its own: NATS, the probers, the decider, the DNS server, the
// controller and the edges, each the detour binary's role command, checking N real TCP
// listeners held by one process in a network namespace of the benchmark's own. The region dies
// at one instant, time zero: one nftables rule in that namespace, committed in one transaction,
// refuses every connection to its endpoints with a TCP reset (a check sees "connection
// refused", as from a dead listener), then the listeners' process is killed with SIGKILL (the
// kernel takes a fraction of a second to reap 10,000 sockets, the region refused throughout).
// It comes back at one instant too: a new process listens on the N endpoints while the rule
// still refuses them, then the rule is flushed. Per N it prints when each DNS answer and
// each edge route moved, DNS queries per second during the storm against the same server's
// static rate (dnsperf, in a process of its own), transitions appended per second, zone
// versions, NOTIFYs sent, and the CPU and peak RSS of each role. `go tool task bench:region`.
package main
