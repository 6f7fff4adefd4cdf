-- 0001 foundation: users, links, groups, firms, offices, grants, runs,
-- cursors, leases and the append-only audit log.
-- Times are TIMESTAMPTZ (microsecond precision); JSON columns use json (the
-- text is kept byte for byte, as the audit hash chain needs); text columns that
-- are compared or sorted use COLLATE "C" so order matches the SQLite backend.
-- *_lc columns hold the Go-lowercased value for case-insensitive rules.

CREATE TABLE users (
	id              TEXT COLLATE "C" PRIMARY KEY,
	user_name       TEXT COLLATE "C" NOT NULL,
	user_name_lc    TEXT COLLATE "C" NOT NULL,
	external_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
	email           TEXT COLLATE "C" NOT NULL DEFAULT '',
	email_lc        TEXT COLLATE "C" NOT NULL DEFAULT '',
	given_name      TEXT COLLATE "C" NOT NULL DEFAULT '',
	family_name     TEXT COLLATE "C" NOT NULL DEFAULT '',
	display_name    TEXT COLLATE "C" NOT NULL DEFAULT '',
	display_name_lc TEXT COLLATE "C" NOT NULL DEFAULT '',
	active          BOOLEAN NOT NULL DEFAULT TRUE,
	user_type       TEXT COLLATE "C" NOT NULL DEFAULT '',
	firm_number     TEXT COLLATE "C" NOT NULL DEFAULT '',
	usual_role      TEXT COLLATE "C" NOT NULL DEFAULT '',
	location        TEXT COLLATE "C" NOT NULL DEFAULT '',
	attrs           JSON,
	version         BIGINT NOT NULL,
	created_at      TIMESTAMPTZ NOT NULL,
	updated_at      TIMESTAMPTZ NOT NULL,
	deleted_at      TIMESTAMPTZ
);
CREATE UNIQUE INDEX users_user_name_uq ON users (user_name_lc) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_uq ON users (email_lc) WHERE deleted_at IS NULL AND email_lc <> '';
CREATE INDEX users_external_id_idx ON users (external_id);

CREATE TABLE user_emails (
	user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	idx        BIGINT NOT NULL,
	value      TEXT COLLATE "C" NOT NULL,
	value_lc   TEXT COLLATE "C" NOT NULL,
	type       TEXT COLLATE "C" NOT NULL DEFAULT '',
	is_primary BOOLEAN NOT NULL DEFAULT FALSE,
	PRIMARY KEY (user_id, idx)
);
CREATE INDEX user_emails_value_idx ON user_emails (value_lc);

CREATE TABLE source_links (
	source       TEXT COLLATE "C" NOT NULL,
	link_key     TEXT COLLATE "C" NOT NULL,
	user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	dn           TEXT COLLATE "C" NOT NULL DEFAULT '',
	gone_at      TIMESTAMPTZ,
	last_seen_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (source, link_key)
);
CREATE INDEX source_links_user_idx ON source_links (user_id);

CREATE TABLE groups (
	id              TEXT COLLATE "C" PRIMARY KEY,
	source          TEXT COLLATE "C" NOT NULL,
	source_key      TEXT COLLATE "C" NOT NULL DEFAULT '',
	external_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
	display_name    TEXT COLLATE "C" NOT NULL,
	display_name_lc TEXT COLLATE "C" NOT NULL,
	dn              TEXT COLLATE "C" NOT NULL DEFAULT '',
	attrs           JSON,
	version         BIGINT NOT NULL,
	created_at      TIMESTAMPTZ NOT NULL,
	updated_at      TIMESTAMPTZ NOT NULL,
	deleted_at      TIMESTAMPTZ
);
CREATE UNIQUE INDEX groups_display_name_uq ON groups (source, display_name_lc) WHERE deleted_at IS NULL;
CREATE INDEX groups_source_key_idx ON groups (source, source_key);
CREATE INDEX groups_external_id_idx ON groups (external_id);
CREATE INDEX groups_display_name_idx ON groups (display_name_lc);

CREATE TABLE group_members (
	group_id TEXT COLLATE "C" NOT NULL REFERENCES groups (id),
	user_id  TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id, group_id);

CREATE TABLE group_edges (
	parent_id TEXT COLLATE "C" NOT NULL REFERENCES groups (id),
	child_id  TEXT COLLATE "C" NOT NULL REFERENCES groups (id),
	PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX group_edges_child_idx ON group_edges (child_id, parent_id);

CREATE TABLE firms (
	number        TEXT COLLATE "C" PRIMARY KEY,
	name          TEXT COLLATE "C" NOT NULL,
	type          TEXT COLLATE "C" NOT NULL,
	parent_number TEXT COLLATE "C" NOT NULL DEFAULT '',
	enabled       BOOLEAN NOT NULL,
	version       BIGINT NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE offices (
	code        TEXT COLLATE "C" PRIMARY KEY,
	firm_number TEXT COLLATE "C" NOT NULL,
	address     JSON,
	city        TEXT COLLATE "C" NOT NULL DEFAULT '',
	postcode    TEXT COLLATE "C" NOT NULL DEFAULT '',
	active      BOOLEAN NOT NULL,
	version     BIGINT NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX offices_firm_idx ON offices (firm_number, code);

CREATE TABLE firm_memberships (
	user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	firm_number TEXT COLLATE "C" NOT NULL,
	source      TEXT COLLATE "C" NOT NULL DEFAULT '',
	PRIMARY KEY (user_id, firm_number)
);
CREATE INDEX firm_memberships_firm_idx ON firm_memberships (firm_number);

CREATE TABLE legacy_logins (
	login        TEXT COLLATE "C" PRIMARY KEY,
	firm_number  TEXT COLLATE "C" NOT NULL,
	email        TEXT COLLATE "C" NOT NULL DEFAULT '',
	email_lc     TEXT COLLATE "C" NOT NULL DEFAULT '',
	given_name   TEXT COLLATE "C" NOT NULL DEFAULT '',
	family_name  TEXT COLLATE "C" NOT NULL DEFAULT '',
	office_codes JSON,
	user_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
	version      BIGINT NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX legacy_logins_firm_idx ON legacy_logins (firm_number);
CREATE INDEX legacy_logins_email_idx ON legacy_logins (email_lc);
CREATE INDEX legacy_logins_user_idx ON legacy_logins (user_id);

CREATE TABLE grants (
	id          TEXT COLLATE "C" PRIMARY KEY,
	user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	firm_number TEXT COLLATE "C" NOT NULL,
	service     TEXT COLLATE "C" NOT NULL,
	role        TEXT COLLATE "C" NOT NULL,
	all_offices BOOLEAN NOT NULL,
	offices     JSON,
	provenance  JSON NOT NULL,
	version     BIGINT NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX grants_key_uq ON grants (user_id, firm_number, service, role);
CREATE INDEX grants_firm_idx ON grants (firm_number, service, role);

CREATE TABLE runs (
	id          TEXT COLLATE "C" PRIMARY KEY,
	job         TEXT COLLATE "C" NOT NULL,
	trigger_kind TEXT COLLATE "C" NOT NULL DEFAULT '',
	status      TEXT COLLATE "C" NOT NULL,
	started_at  TIMESTAMPTZ NOT NULL,
	finished_at TIMESTAMPTZ,
	counts      JSON,
	error       TEXT COLLATE "C" NOT NULL DEFAULT '',
	plan_hash   TEXT COLLATE "C" NOT NULL DEFAULT '',
	plan        JSON
);
CREATE INDEX runs_job_idx ON runs (job, started_at);
CREATE INDEX runs_started_idx ON runs (started_at);

CREATE TABLE run_items (
	run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
	seq         BIGINT NOT NULL,
	action      TEXT COLLATE "C" NOT NULL,
	object_type TEXT COLLATE "C" NOT NULL DEFAULT '',
	object_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
	reason      TEXT COLLATE "C" NOT NULL DEFAULT '',
	before_json JSON,
	after_json  JSON,
	PRIMARY KEY (run_id, seq)
);

CREATE TABLE cursors (
	source     TEXT COLLATE "C" PRIMARY KEY,
	value      TEXT COLLATE "C" NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE leases (
	name       TEXT COLLATE "C" PRIMARY KEY,
	holder     TEXT COLLATE "C" NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_events (
	seq         BIGINT PRIMARY KEY,
	at          TIMESTAMPTZ NOT NULL,
	actor       TEXT COLLATE "C" NOT NULL,
	action      TEXT COLLATE "C" NOT NULL,
	object_type TEXT COLLATE "C" NOT NULL,
	object_id   TEXT COLLATE "C" NOT NULL,
	before_json JSON,
	after_json  JSON,
	run_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
	request_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
	prev_hash   TEXT COLLATE "C" NOT NULL,
	hash        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_events_object_idx ON audit_events (object_id, seq);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The chain head: the newest event's seq and hash, updated in the same
-- transaction as the events; writers lock this row FOR UPDATE, which
-- serialises the chain.
CREATE TABLE audit_head (
	id   BIGINT PRIMARY KEY CHECK (id = 1),
	seq  BIGINT NOT NULL,
	hash TEXT COLLATE "C" NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
