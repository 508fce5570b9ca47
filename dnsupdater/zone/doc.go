// Package zone projects Detour's configuration and health state into DNS data: the records of
// every served zone and, for every app, the answer its policy gives. It is pure: no I/O, no
// clock, no logging; the server and the pusher turn its output into packets.
package zone
