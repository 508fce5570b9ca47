// Package route is the pure core of an edge: it projects the configuration and the recorded
// state into an edge's route table, and chooses the targets of one request from that table.
package route
