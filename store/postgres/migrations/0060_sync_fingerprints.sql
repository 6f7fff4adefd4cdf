-- 0060 sync_fingerprints: a sync source's cache of its comparisons (ldapsync).
-- A row says: entry link_key of source, as last compared, matched user
-- user_id at users.version user_version, and its managed fields hash to
-- digest. A full sync skips reading a user whose entry still hashes to the
-- digest while the user is still at that version (every user write bumps
-- users.version). Not a domain fact and not audited (like a lease): losing
-- or ignoring a row only costs a re-read of the user. No foreign key: a row
-- whose user is gone is simply never fresh.
CREATE TABLE sync_fingerprints (
	source       TEXT COLLATE "C" NOT NULL,
	link_key     TEXT COLLATE "C" NOT NULL,
	user_id      TEXT COLLATE "C" NOT NULL,
	digest       TEXT COLLATE "C" NOT NULL,
	user_version BIGINT NOT NULL,
	PRIMARY KEY (source, link_key)
);

-- The same for a source's groups: entry group_key's members (resolved,
-- as the sync writes them) hashed to digest when group group_id was at
-- groups.version group_version (every member change bumps it). A full sync
-- reads the members only of groups whose digest or version moved.
CREATE TABLE sync_group_fingerprints (
	source        TEXT COLLATE "C" NOT NULL,
	group_key     TEXT COLLATE "C" NOT NULL,
	group_id      TEXT COLLATE "C" NOT NULL,
	digest        TEXT COLLATE "C" NOT NULL,
	group_version BIGINT NOT NULL,
	PRIMARY KEY (source, group_key)
);
