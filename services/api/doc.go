// Package api is the controller's HTTP API (JSON under /v1) and the live status page: apps with
// their current answer, pools and endpoints with each region's vote, edges, the transition
// history, overrides and configuration versions, behind bearer tokens of read or write scope.
package api
