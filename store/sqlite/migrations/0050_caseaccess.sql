-- 0050 case access (owned by caseaccess/): cases, individual invites with an
-- optional expiry, group grants (usual role + location), e-mail-domain grants,
-- access records (first access, the grant used, retention) and the
-- notification outbox. Times are INTEGER microseconds since the epoch (UTC).

CREATE TABLE cases (
	ref        TEXT PRIMARY KEY,
	title      TEXT NOT NULL DEFAULT '',
	defendants TEXT,
	created_by TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);

CREATE TABLE case_invites (
	id            TEXT PRIMARY KEY,
	case_ref      TEXT NOT NULL REFERENCES cases (ref),
	user_id       TEXT NOT NULL REFERENCES users (id),
	role          TEXT NOT NULL,
	defendants    TEXT,
	expires_at    INTEGER,
	message       TEXT NOT NULL DEFAULT '',
	inviter_id    TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	revoked_at    INTEGER,
	revoke_reason TEXT NOT NULL DEFAULT ''
);
-- one live invite per (case, user)
CREATE UNIQUE INDEX case_invites_live_uq ON case_invites (case_ref, user_id) WHERE revoked_at IS NULL;
CREATE INDEX case_invites_user_idx ON case_invites (user_id);
-- the expiry timer's next deadline and its sweep
CREATE INDEX case_invites_expiry_idx ON case_invites (expires_at) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
-- who can grant: live invites of a case by role
CREATE INDEX case_invites_role_idx ON case_invites (case_ref, role) WHERE revoked_at IS NULL;

CREATE TABLE case_group_grants (
	id          TEXT PRIMARY KEY,
	case_ref    TEXT NOT NULL REFERENCES cases (ref),
	usual_role  TEXT NOT NULL,
	location    TEXT NOT NULL DEFAULT '',
	match_key   TEXT NOT NULL,
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX case_group_grants_uq ON case_group_grants (case_ref, match_key);

CREATE TABLE case_domain_grants (
	id         TEXT PRIMARY KEY,
	case_ref   TEXT NOT NULL REFERENCES cases (ref),
	domain     TEXT NOT NULL,
	defendants TEXT,
	location   TEXT NOT NULL DEFAULT '',
	match_key  TEXT NOT NULL,
	created_by TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX case_domain_grants_uq ON case_domain_grants (case_ref, match_key);

CREATE TABLE case_access (
	case_ref    TEXT NOT NULL REFERENCES cases (ref),
	user_id     TEXT NOT NULL REFERENCES users (id),
	first_at    INTEGER NOT NULL,
	via_kind    TEXT NOT NULL,
	via_id      TEXT NOT NULL,
	via_detail  TEXT NOT NULL DEFAULT '',
	defendants  TEXT,
	all_defendants INTEGER NOT NULL DEFAULT 0,
	retained_at INTEGER,
	PRIMARY KEY (case_ref, user_id)
);
CREATE INDEX case_access_via_idx ON case_access (case_ref, via_kind, via_id);

CREATE TABLE case_notifications (
	id           INTEGER PRIMARY KEY,
	kind         TEXT NOT NULL,
	case_ref     TEXT NOT NULL,
	invite_id    TEXT NOT NULL DEFAULT '',
	recipient_id TEXT NOT NULL,
	payload      TEXT,
	created_at   INTEGER NOT NULL,
	sent_at      INTEGER
);
CREATE INDEX case_notifications_unsent_idx ON case_notifications (id) WHERE sent_at IS NULL;
