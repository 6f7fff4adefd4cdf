-- 0001 foundation: users, links, groups, firms, offices, grants, runs,
-- cursors, leases and the append-only audit log.
-- Times are INTEGER microseconds since the Unix epoch (UTC).
-- *_lc columns hold the Go-lowercased value for case-insensitive rules.

CREATE TABLE users (
	id              TEXT PRIMARY KEY,
	user_name       TEXT NOT NULL,
	user_name_lc    TEXT NOT NULL,
	external_id     TEXT NOT NULL DEFAULT '',
	email           TEXT NOT NULL DEFAULT '',
	email_lc        TEXT NOT NULL DEFAULT '',
	given_name      TEXT NOT NULL DEFAULT '',
	family_name     TEXT NOT NULL DEFAULT '',
	display_name    TEXT NOT NULL DEFAULT '',
	display_name_lc TEXT NOT NULL DEFAULT '',
	active          INTEGER NOT NULL DEFAULT 1,
	user_type       TEXT NOT NULL DEFAULT '',
	firm_number     TEXT NOT NULL DEFAULT '',
	usual_role      TEXT NOT NULL DEFAULT '',
	location        TEXT NOT NULL DEFAULT '',
	attrs           TEXT,
	version         INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	deleted_at      INTEGER
);
CREATE UNIQUE INDEX users_user_name_uq ON users (user_name_lc) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_uq ON users (email_lc) WHERE deleted_at IS NULL AND email_lc <> '';
CREATE INDEX users_external_id_idx ON users (external_id);

CREATE TABLE user_emails (
	user_id    TEXT NOT NULL REFERENCES users (id),
	idx        INTEGER NOT NULL,
	value      TEXT NOT NULL,
	value_lc   TEXT NOT NULL,
	type       TEXT NOT NULL DEFAULT '',
	is_primary INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (user_id, idx)
) WITHOUT ROWID;
CREATE INDEX user_emails_value_idx ON user_emails (value_lc);

CREATE TABLE source_links (
	source       TEXT NOT NULL,
	link_key     TEXT NOT NULL,
	user_id      TEXT NOT NULL REFERENCES users (id),
	dn           TEXT NOT NULL DEFAULT '',
	gone_at      INTEGER,
	last_seen_at INTEGER NOT NULL,
	PRIMARY KEY (source, link_key)
);
CREATE INDEX source_links_user_idx ON source_links (user_id);

CREATE TABLE groups (
	id              TEXT PRIMARY KEY,
	source          TEXT NOT NULL,
	source_key      TEXT NOT NULL DEFAULT '',
	external_id     TEXT NOT NULL DEFAULT '',
	display_name    TEXT NOT NULL,
	display_name_lc TEXT NOT NULL,
	dn              TEXT NOT NULL DEFAULT '',
	attrs           TEXT,
	version         INTEGER NOT NULL,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	deleted_at      INTEGER
);
CREATE UNIQUE INDEX groups_display_name_uq ON groups (source, display_name_lc) WHERE deleted_at IS NULL;
CREATE INDEX groups_source_key_idx ON groups (source, source_key);
CREATE INDEX groups_external_id_idx ON groups (external_id);
CREATE INDEX groups_display_name_idx ON groups (display_name_lc);

CREATE TABLE group_members (
	group_id TEXT NOT NULL REFERENCES groups (id),
	user_id  TEXT NOT NULL REFERENCES users (id),
	PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user_idx ON group_members (user_id, group_id);

CREATE TABLE group_edges (
	parent_id TEXT NOT NULL REFERENCES groups (id),
	child_id  TEXT NOT NULL REFERENCES groups (id),
	PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX group_edges_child_idx ON group_edges (child_id, parent_id);

CREATE TABLE firms (
	number        TEXT PRIMARY KEY,
	name          TEXT NOT NULL,
	type          TEXT NOT NULL,
	parent_number TEXT NOT NULL DEFAULT '',
	enabled       INTEGER NOT NULL,
	version       INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);

CREATE TABLE offices (
	code        TEXT PRIMARY KEY,
	firm_number TEXT NOT NULL,
	address     TEXT,
	city        TEXT NOT NULL DEFAULT '',
	postcode    TEXT NOT NULL DEFAULT '',
	active      INTEGER NOT NULL,
	version     INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
CREATE INDEX offices_firm_idx ON offices (firm_number, code);

CREATE TABLE firm_memberships (
	user_id     TEXT NOT NULL REFERENCES users (id),
	firm_number TEXT NOT NULL,
	source      TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (user_id, firm_number)
);
CREATE INDEX firm_memberships_firm_idx ON firm_memberships (firm_number);

CREATE TABLE legacy_logins (
	login        TEXT PRIMARY KEY,
	firm_number  TEXT NOT NULL,
	email        TEXT NOT NULL DEFAULT '',
	email_lc     TEXT NOT NULL DEFAULT '',
	given_name   TEXT NOT NULL DEFAULT '',
	family_name  TEXT NOT NULL DEFAULT '',
	office_codes TEXT,
	user_id      TEXT NOT NULL DEFAULT '',
	version      INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
);
CREATE INDEX legacy_logins_firm_idx ON legacy_logins (firm_number);
CREATE INDEX legacy_logins_email_idx ON legacy_logins (email_lc);
CREATE INDEX legacy_logins_user_idx ON legacy_logins (user_id);

CREATE TABLE grants (
	id          TEXT PRIMARY KEY,
	user_id     TEXT NOT NULL REFERENCES users (id),
	firm_number TEXT NOT NULL,
	service     TEXT NOT NULL,
	role        TEXT NOT NULL,
	all_offices INTEGER NOT NULL,
	offices     TEXT,
	provenance  TEXT NOT NULL,
	version     INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX grants_key_uq ON grants (user_id, firm_number, service, role);
CREATE INDEX grants_firm_idx ON grants (firm_number, service, role);

CREATE TABLE runs (
	id          TEXT PRIMARY KEY,
	job         TEXT NOT NULL,
	trigger_kind TEXT NOT NULL DEFAULT '',
	status      TEXT NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,
	counts      TEXT,
	error       TEXT NOT NULL DEFAULT '',
	plan_hash   TEXT NOT NULL DEFAULT '',
	plan        TEXT
);
CREATE INDEX runs_job_idx ON runs (job, started_at);
CREATE INDEX runs_started_idx ON runs (started_at);

CREATE TABLE run_items (
	run_id      TEXT NOT NULL REFERENCES runs (id),
	seq         INTEGER NOT NULL,
	action      TEXT NOT NULL,
	object_type TEXT NOT NULL DEFAULT '',
	object_id   TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	before_json TEXT,
	after_json  TEXT,
	PRIMARY KEY (run_id, seq)
);

CREATE TABLE cursors (
	source     TEXT PRIMARY KEY,
	value      TEXT NOT NULL,
	updated_at INTEGER NOT NULL
);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);

CREATE TABLE audit_events (
	seq         INTEGER PRIMARY KEY,
	at          INTEGER NOT NULL,
	actor       TEXT NOT NULL,
	action      TEXT NOT NULL,
	object_type TEXT NOT NULL,
	object_id   TEXT NOT NULL,
	before_json TEXT,
	after_json  TEXT,
	run_id      TEXT NOT NULL DEFAULT '',
	request_id  TEXT NOT NULL DEFAULT '',
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL
);
CREATE INDEX audit_events_object_idx ON audit_events (object_id, seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- The chain head: the newest event's seq and hash, updated in the same
-- transaction as the events (the single writer serialises it).
CREATE TABLE audit_head (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
