-- 0050 case access (owned by caseaccess/): cases, individual invites with an
-- optional expiry, group grants (usual role + location), e-mail-domain grants,
-- access records (first access, the grant used, retention) and the
-- notification outbox. Times are TIMESTAMPTZ; text compared or sorted uses COLLATE "C"
-- so order matches the SQLite backend.

CREATE TABLE cases (
	ref        TEXT COLLATE "C" PRIMARY KEY,
	title      TEXT COLLATE "C" NOT NULL DEFAULT '',
	defendants TEXT,
	created_by TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE case_invites (
	id            TEXT COLLATE "C" PRIMARY KEY,
	case_ref      TEXT COLLATE "C" NOT NULL REFERENCES cases (ref),
	user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	role          TEXT COLLATE "C" NOT NULL,
	defendants    TEXT,
	expires_at    TIMESTAMPTZ,
	message       TEXT COLLATE "C" NOT NULL DEFAULT '',
	inviter_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at    TIMESTAMPTZ NOT NULL,
	revoked_at    TIMESTAMPTZ,
	revoke_reason TEXT COLLATE "C" NOT NULL DEFAULT ''
);
-- one live invite per (case, user)
CREATE UNIQUE INDEX case_invites_live_uq ON case_invites (case_ref, user_id) WHERE revoked_at IS NULL;
CREATE INDEX case_invites_user_idx ON case_invites (user_id);
-- the expiry timer's next deadline and its sweep
CREATE INDEX case_invites_expiry_idx ON case_invites (expires_at) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
-- who can grant: live invites of a case by role
CREATE INDEX case_invites_role_idx ON case_invites (case_ref, role) WHERE revoked_at IS NULL;

CREATE TABLE case_group_grants (
	id          TEXT COLLATE "C" PRIMARY KEY,
	case_ref    TEXT COLLATE "C" NOT NULL REFERENCES cases (ref),
	usual_role  TEXT COLLATE "C" NOT NULL,
	location    TEXT COLLATE "C" NOT NULL DEFAULT '',
	match_key   TEXT COLLATE "C" NOT NULL,
	created_by  TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX case_group_grants_uq ON case_group_grants (case_ref, match_key);

CREATE TABLE case_domain_grants (
	id         TEXT COLLATE "C" PRIMARY KEY,
	case_ref   TEXT COLLATE "C" NOT NULL REFERENCES cases (ref),
	domain     TEXT COLLATE "C" NOT NULL,
	defendants TEXT,
	location   TEXT COLLATE "C" NOT NULL DEFAULT '',
	match_key  TEXT COLLATE "C" NOT NULL,
	created_by TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX case_domain_grants_uq ON case_domain_grants (case_ref, match_key);

CREATE TABLE case_access (
	case_ref    TEXT COLLATE "C" NOT NULL REFERENCES cases (ref),
	user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
	first_at    TIMESTAMPTZ NOT NULL,
	via_kind    TEXT COLLATE "C" NOT NULL,
	via_id      TEXT COLLATE "C" NOT NULL,
	via_detail  TEXT COLLATE "C" NOT NULL DEFAULT '',
	defendants  TEXT,
	all_defendants BOOLEAN NOT NULL DEFAULT FALSE,
	retained_at TIMESTAMPTZ,
	PRIMARY KEY (case_ref, user_id)
);
CREATE INDEX case_access_via_idx ON case_access (case_ref, via_kind, via_id);

CREATE TABLE case_notifications (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind         TEXT COLLATE "C" NOT NULL,
	case_ref     TEXT COLLATE "C" NOT NULL,
	invite_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
	recipient_id TEXT COLLATE "C" NOT NULL,
	payload      JSON,
	created_at   TIMESTAMPTZ NOT NULL,
	sent_at      TIMESTAMPTZ
);
CREATE INDEX case_notifications_unsent_idx ON case_notifications (id) WHERE sent_at IS NULL;
