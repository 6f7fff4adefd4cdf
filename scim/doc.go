// Package scim is dirsyncd's SCIM 2.0 server (RFC 7643, RFC 7644) under
// /scim/v2: Users (core User, enterprise extension and the dirsyncd
// extension urn:dirsyncd:params:scim:schemas:extension:dirsyncd:2.0:User),
// Groups, ServiceProviderConfig, ResourceTypes and Schemas.
//
// It owns: authentication of SCIM clients (bearer token with scope scim;
// 401/403 are SCIM error bodies), a per-client token-bucket rate limit
// (429 + Retry-After), body limits (413), translation of SCIM filters into
// store.Filter (queries, sorting and paging run in the store, never in
// memory), PATCH application including identity-provider quirks, ETags,
// deprovisioning and the reconcile hook (Enqueuer). It reaches the store
// only through Backend, declared here.
//
// # elimity-com/scim: which version, and what it does here
//
// Pinned: v0.0.0-20260328082225-d5e7ba418946 (2026). Read in the module
// cache: its filter validator adds the common attributes (id, externalId,
// meta.*) to every schema (the 2024 version, 20240320110924-172bf2aee9c8,
// rejects `externalId eq "…"`, which Entra's test connection sends), it has
// WithBaseURL for an absolute meta.location and a Location header on 201
// (2024: relative location, no header), POST /.search, and ApplyPatch.
//
// The library still gets in the way of several requirements, so dirsyncd
// uses it for the discovery endpoints (/Schemas and /ResourceTypes are
// served by its Server, built from its schema package plus the dirsyncd
// extension) and for the filter grammar (github.com/scim2/filter-parser/v2,
// which it wraps), and serves /Users and /Groups with its own handlers:
//   - its ResourceHandler gets no say in conditional requests: no 304 for
//     If-None-Match and no 412 for If-Match before work is done;
//   - it reads bodies with io.ReadAll without a limit and answers a read
//     error with 500, where a body over 1 MiB must be 413;
//   - itemsPerPage is the requested count, not the number returned;
//   - its schema validation rejects Entra's "True"/"False" booleans unless a
//     process-global switch (schema.SetAllowStringValues) is flipped, and it
//     rejects a manager given as a plain string;
//   - ApplyPatch needs the whole resource in memory, which for a group of
//     100,000 members means reading the member list on every PATCH; here
//     member operations go straight to the store's O(changed) calls;
//   - its ServiceProviderConfig hard-codes etag and sort as unsupported
//     (dirsyncd serves its own).
//
// # Decisions
//
// Deprovisioning: PATCH/PUT active=false keeps the user visible with
// active:false; DELETE soft-deletes (404 afterwards; record, links and
// history kept; the SCIM link is marked gone). Both delete every grant of
// the user in the same transaction (store.Tx.ListGrants/DeleteGrant) and
// enqueue the user for reconciliation: access is gone at commit even before
// a reconcile runs, and reconcile, seeing an inactive or deleted user,
// desires no grant either. Re-creating the same userName after a DELETE
// creates a new user; the (client, externalId) link moves to it.
//
// Passwords are accepted (clients send them) and dropped before anything is
// stored; they are never returned.
//
// Groups are owned by the SCIM client that created them (source
// "scim:<token name>", also for a token that has admin scopes besides scim,
// whose audit actor is "admin:<name>"; user links use the same source); a
// client is served only its own groups: by id (404 otherwise, for other
// SCIM clients' groups too) and in GET /Groups, whose filter the store
// narrows to the client's source in SQL (store/sqlstore/scim_groups.go).
// Group PATCH answers 204 (what Entra expects, accepted by Okta). Removing
// a member who is not in the group is not an error (idempotent, as
// identity providers retry): members[value eq "…"] is the one remove
// filter that is not noTarget when it matches nothing.
//
// # ETags and member changes
//
// A resource's ETag is W/"<version>" of its store row. A group's members
// are part of the Group, so every member write that adds or removes a
// member gives the group a new version and meta.lastModified in the same
// transaction (one UPDATE of the group's row, in the member statement
// itself on PostgreSQL's one-statement path; no read of the member list),
// and one that changes nothing keeps them (TestGroupETagFollowsMembers).
// A user's version is not changed by its group memberships, nor by the
// grants behind its read-only roles and offices: those attributes are
// readOnly, derived from other resources (RFC 7643 §4.1.2: membership is
// changed through the Group). Bumping the users would make a member
// write lock and write every changed user's row (FOR NO KEY UPDATE where
// it now takes FOR KEY SHARE: it would wait for, and could deadlock with,
// a concurrent PUT of that user, TestMemberAddBesideUserUpdate), a group
// DELETE or replace of a 100k-member group write 100k user rows, and it
// would turn an Okta GET-then-PUT of a user into 412 whenever a group push
// ran in between. So a user's ETag covers its own attributes: If-None-Match
// on a user may answer 304 while its groups or roles changed; read them
// without If-None-Match (or through /Groups) to see membership changes.
//
// Filters outside RFC 7644's grammar that Entra sends are accepted:
// emails[type eq "work"].value eq "…" is read as
// emails[type eq "work" and value eq "…"]. Simple comparisons
// (attr[.sub] op "value") skip the general filter parser (fastFilter);
// FuzzFilter checks that both parse them alike.
//
// # Store reads shaped for SCIM
//
// Where the store offers them (store/sqlstore/scim_*.go; found by type
// assertion, so Backend stays the generic store.Reader and a backend without
// them still works), the hot paths use fewer statements (on PostgreSQL each
// statement is a round trip, and each round trip costs CPU on both sides;
// see BENCHMARKS.md): a lookup reads the page with its users' e-mails,
// roles and groups in one statement and skips the count when the page tells
// the total; PUT and PATCH read the user once, locked, with its roles and
// groups, skip unchanged uniqueness checks and e-mail rewrites, and render
// the response from what they read (a write changes neither, except that a
// deactivation revokes every grant, so its response shows none); a group
// member PATCH locks the group once and adds or removes members in one
// statement each (the member check runs only when an id was not added).
// On PostgreSQL the user is locked FOR NO KEY UPDATE (the lock its UPDATE
// takes), so adding that user to a group meanwhile does not wait for it;
// a PUT's UPDATE (when it is the write's last statement) travels with the
// audit flush and COMMIT (2 round trips), and a PATCH whose one operation
// adds members or removes members[value eq "…"] locks the group and writes
// the members in one statement (groupMemberLockWriter; 2 round trips). The
// audit chain head is locked by the flush's own statement, sealed in SQL,
// sent with COMMIT (store/sqlstore/scim_auditchain.go): it is the last lock
// every write takes and is held for that statement only, never across a
// round trip (TestSCIMWritesLockAuditHeadOnlyAtCommit); an addition still
// locks the users' rows its foreign-key checks need first (FOR KEY SHARE).
// TestStoreFastPathsAnswerAlike, TestMemberOnlyPatchChecks,
// TestSCIMUpdateUserMatchesUpdateUser, TestGroupMemberFastPathMatches,
// TestWriteResponseMatchesGet and TestMemberAddBesideUserUpdate check that
// both paths answer and store alike.
//
// # Group commit (SQLite)
//
// Every SCIM write runs through the store's SCIMUpdate when it has one
// (store/sqlstore/scim_batch.go). On SQLite, whose single writer was the
// limit under an identity provider's concurrent pushes, the writes that
// arrive while one runs share its transaction: each runs in its own
// SAVEPOINT (a failing write rolls back only itself, its audit events
// included), every write's events are chained and written inside its
// savepoint, and all commit together; a write returns only after that
// COMMIT, and if the COMMIT fails every write of the batch fails with
// nothing stored. A write's function runs on the batch leader's goroutine
// with its request's context values but not its cancellation (an
// interrupted SQLite write would roll back the whole batch). On PostgreSQL,
// whose writers run in parallel, SCIMUpdate is Update. The conformance
// suite checks it on both stores (store/storetest/scim.go).
//
// PATCH quirks accepted without special-casing a client: op in any case;
// booleans as "True"/"False"; path-less add/replace whose value holds
// dotted keys (name.givenName), extension URN attribute keys, or echoed
// schemas/id/meta keys (ignored); a complex attribute with a value
// sub-attribute (manager) given as a plain string; remove of a
// multi-valued attribute with a value array and no filter; replace of
// emails[type eq "work"].value on a user without such an e-mail (the value
// the filter describes is created). A filter that matches nothing in
// remove (or in replace, when the filter describes no value) is noTarget.
package scim
