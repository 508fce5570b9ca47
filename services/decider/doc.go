// Package decider is the shell around package decide: it folds the PROBES stream into endpoint
// and pool decisions and appends every transition to STATE with expected-last-subject-sequence,
// so any number of replicas can run at once and each change is recorded exactly once.
package decider
