// Command edgebench measures requests/s and latency through a Detour edge against the same
// backend reached directly and through nginx and HAProxy, in one run on loopback, and prints the
// ratios. Each server runs in its own process; the load generator is a closed loop of
// keep-alive HTTP/1.1 connections.
package main
