-- 0054 users_external_id_live_idx (0030) is narrowed to users that have an
-- externalId. As 0030 created it, its predicate (deleted_at IS NULL) is
-- implied by every query on live users, so a planner without statistics
-- (a fresh install before autovacuum's first ANALYZE of users, which can be
-- a whole first provisioning burst) may read the whole index as a way to
-- find live users: it did for the userName uniqueness check of every SCIM
-- create and PUT (`user_name_lc = $1 AND deleted_at IS NULL AND id <> $2`),
-- whose generic plan, made while users was nearly empty, then scanned all
-- live users per request: 283 instead of ~700 creates/s for 10,000 users in
-- `make bench-scim`. The SCIM translation of `externalId eq "…"` adds
-- `external_id <> ''` (store/sqlstore/filter.go), which this predicate
-- needs; no other query implies it.
DROP INDEX users_external_id_live_idx;
CREATE INDEX users_external_id_live_idx ON users (external_id) WHERE deleted_at IS NULL AND external_id <> '';
