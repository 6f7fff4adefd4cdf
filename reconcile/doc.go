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
// A full run streams the users in id order, a page of 5,000 at a time; each
// page's links, firm memberships, group memberships, legacy logins and
// grants are read with one range query each (store.BulkReader), the next
// page while the current one is evaluated, so memory holds a page, not
// every grant. Any failed read, or fewer users read than counted at the
// start, aborts the run before anything is planned.
//
// Worker runs event-driven reconciles of changed users from a de-duplicated
// queue (one user never reconciled concurrently, retries with backoff,
// quarantine after repeated failures, recorded by QuarantineRecorder as an
// audit event reconcile.quarantine on the user); the full reconcile is a
// scheduler job of kind reconcile. Feed fills the queue from the audit log,
// which every writer (SCIM, LDAP, CWA, admins) appends to in the same
// transaction as its change: a source cannot forget to notify. It starts at
// the log's head (earlier changes are the scheduled full run's job), maps
// each event to the users it affects (a firm or office change: every user
// of the firm; a group renamed or nested: its members, transitively) and
// asks for one full reconcile instead when a group is deleted (its former
// members are no longer in the store) or a poll touches more than
// FullThreshold users. Events by actor reconcile are not followed.
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
