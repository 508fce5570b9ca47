// Package controller runs Detour's edge control loop: it projects CONFIG and STATE into every
// edge's route table and publishes it on ROUTES, and it folds edge heartbeats into edge liveness,
// appending edge up/down transitions to STATE.
package controller
