-- 0060 sync_fingerprints: a sync source's cache of its comparisons (ldapsync).
-- A row says: entry link_key of source, as last compared, matched user
-- user_id at users.version user_version, and its managed fields hash to
-- digest. A full sync skips reading a user whose entry still hashes to the
-- digest while the user is still at that version (every user write bumps
-- users.version). Not a domain fact and not audited (like a lease): losing
-- or ignoring a row only costs a re-read of the user. No foreign key: a row
-- whose user is gone is simply never fresh.
CREATE TABLE sync_fingerprints (
	source       TEXT NOT NULL,
	link_key     TEXT NOT NULL,
	user_id      TEXT NOT NULL,
	digest       TEXT NOT NULL,
	user_version INTEGER NOT NULL,
	PRIMARY KEY (source, link_key)
) WITHOUT ROWID;
-- The users' versions are read apart (ListUserVersions) from this covering
-- index, off the users table's pages (100,000 users: a few MB instead of
-- the whole table).
CREATE INDEX users_id_version_idx ON users (id, version, deleted_at);

-- The same for a source's groups: entry group_key's members (resolved,
-- as the sync writes them) hashed to digest when group group_id was at
-- groups.version group_version (every member change bumps it). A full sync
-- reads the members only of groups whose digest or version moved.
CREATE TABLE sync_group_fingerprints (
	source        TEXT NOT NULL,
	group_key     TEXT NOT NULL,
	group_id      TEXT NOT NULL,
	digest        TEXT NOT NULL,
	group_version INTEGER NOT NULL,
	PRIMARY KEY (source, group_key)
) WITHOUT ROWID;
