// Package reconcile makes the actual grants equal the grants the mapping
// rules desire: it loads facts from the store, diffs desired against actual
// into a Plan (grant, revoke, update offices or provenance, each with a
// reason), applies the guards (a run that would revoke too much is held with
// its plan and plan hash until approved), and applies the plan in audited
// batches with actor "reconcile" and the run id. It owns only ProvRule
// provenance: manual and source grants are never removed by rules (only by
// deprovisioning), and a grant both manual and rule-made keeps both.
//
// Worker runs event-driven reconciles of changed users from a de-duplicated
// queue (one user never reconciled concurrently, retries with backoff,
// quarantine after repeated failures); a full reconcile runs on the cron
// schedule. The Store interface it needs is declared here (a subset of
// store.Store).
package reconcile
