-- 0061 sync_snapshots: a sync source's prefetch state as one row (ldapsync).
-- data holds, for each of the source's links, its key, user, DN, whether it
-- is gone, and whether its fingerprint was fresh (its user still at the
-- version the fingerprint names), as read after audit event audit_seq: a
-- full sync reads this row and the users named by the audit events after
-- audit_seq (every user and link write records one, object_type 'user')
-- instead of scanning every link, fingerprint and user version. Not a
-- domain fact and not audited (like sync_fingerprints): a missing, older or
-- unreadable row only costs the scans.
CREATE TABLE sync_snapshots (
	source    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
	audit_seq BIGINT NOT NULL,
	data      BYTEA NOT NULL
);
-- Stored as is: the data is mostly random ids and digests, which pglz
-- would spend time on for little.
ALTER TABLE sync_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
