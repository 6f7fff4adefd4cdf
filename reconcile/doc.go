// Package reconcile makes the actual grants equal the grants the mapping
// rules desire: it loads facts from the store, diffs desired against actual
// into a Plan (grant, revoke, update offices or provenance, each with a
// reason), applies the guards (a run that would revoke more than
// max(MinRevokes, Percent% of all grants) is held with its plan and plan
// hash until Approve), and applies the plan in audited batches with actor
// "reconcile" and the run id. It owns only ProvRule provenance: manual and
// source grants are never removed by rules (only by deprovisioning: an
// inactive or deleted user loses every grant), and a grant both manual and
// rule-made keeps both provenances.
//
// Worker runs event-driven reconciles of changed users from a de-duplicated
// queue (one user never reconciled concurrently, retries with backoff,
// quarantine after repeated failures); the full reconcile is a scheduler job
// of kind reconcile.
//
// Targets beyond the store: RoleGroups keeps one group per role in a
// directory (reconcile/ldaptarget implements it over LDAP) and reports and
// corrects out-of-band drift; the CCMS outbox writes a message in the same
// transaction as every batch that changes a user's CCMS-coded roles, and
// Outbox delivers them with retries, a de-duplication key and per-user
// delivery flags.
//
// The Store interface it needs is declared here (a subset of store.Store).
package reconcile
