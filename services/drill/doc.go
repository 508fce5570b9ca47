// Package drill runs disaster-recovery drills: a drill file names steps of simulated failures
// (a pool, an endpoint, a probing region, an edge) with a recovery time objective each; plan
// previews every step's answers and routes with the live path's pure code and refuses what a
// safety rule forbids; run appends the steps to DRILLS, which the decider and the controller
// honour as simulated failures, measures each switch as users see it and scores it; rollback
// lifts them, and any controller replica does so by itself when a drill overstays max_duration
// or its runner dies. View is the pure fold of DRILLS every role shares.
package drill
