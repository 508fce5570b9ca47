// Package decider is the shell around package decide: it folds the PROBES stream into endpoint
// and pool decisions and records the transitions of each decision round to STATE as batches
// (events.TypeStateBatch), each appended on its slot with expected-last-subject-sequence, so any
// number of replicas can run at once and each change is recorded exactly once; it restates
// STATE in checkpoints so that readers start from the last message of each subject.
package decider
