// Command regionbench kills a region of N endpoints at once and brings it back, with every role
// of Detour in a process of its own: NATS, the probers, the decider, the DNS server, the
// controller and the edges, each the detour binary's role command, checking N real TCP
// listeners held by one process in a network namespace of the benchmark's own. The listeners'
// process is killed with SIGKILL, then started again. Per N it prints when each DNS answer and
// each edge route moved, DNS queries per second during the storm against the same server's
// static rate (dnsperf, in a process of its own), transitions appended per second, zone
// versions, NOTIFYs sent, and the CPU and peak RSS of each role. `go tool task bench:region`.
package main
