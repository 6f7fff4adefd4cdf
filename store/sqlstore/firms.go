package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

const firmSelect = `SELECT number, name, type, parent_number, enabled, version, updated_at FROM firms`

func (r *reader) queryFirms(ctx context.Context, tail string, args ...any) ([]directory.Firm, error) {
	rows, err := r.c.Query(ctx, firmSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Firm
	for rows.Next() {
		var f directory.Firm
		var typ string
		if err := rows.Scan(&f.Number, &f.Name, &typ, &f.ParentNumber, &f.Enabled, &f.Version, tscan{&f.UpdatedAt}); err != nil {
			return nil, err
		}
		f.Type = directory.FirmType(typ)
		out = append(out, f)
	}
	return out, rows.Err()
}

// GetFirm returns a firm by number.
func (r *reader) GetFirm(ctx context.Context, number string) (directory.Firm, error) {
	fs, err := r.queryFirms(ctx, "WHERE number = ?", number)
	if err != nil {
		return directory.Firm{}, fmt.Errorf("store: get firm %q: %w", number, err)
	}
	if len(fs) == 0 {
		return directory.Firm{}, fmt.Errorf("store: get firm %q: %w", number, store.ErrNotFound)
	}
	return fs[0], nil
}

// ListFirms returns all firms by number.
func (r *reader) ListFirms(ctx context.Context) ([]directory.Firm, error) {
	fs, err := r.queryFirms(ctx, "ORDER BY number")
	if err != nil {
		return nil, fmt.Errorf("store: list firms: %w", err)
	}
	return fs, nil
}

// PutFirm creates or updates a firm by number.
func (t *txn) PutFirm(ctx context.Context, f *directory.Firm) error {
	op := fmt.Sprintf("put firm %q", f.Number)
	if f.Number == "" {
		return fmt.Errorf("store: %s: empty number", op)
	}
	cur, err := t.queryFirms(ctx, "WHERE number = ?"+t.forUpdate(), f.Number)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	var before json.RawMessage
	if len(cur) == 1 {
		c := cur[0]
		if c.Name == f.Name && c.Type == f.Type && c.ParentNumber == f.ParentNumber && c.Enabled == f.Enabled {
			f.Version, f.UpdatedAt = c.Version, c.UpdatedAt
			return nil
		}
		before = audit.Marshal(c)
		f.Version = c.Version + 1
	} else {
		f.Version = 1
	}
	f.UpdatedAt = t.s.nowUTC()
	if _, err := t.c.Exec(ctx, `INSERT INTO firms (number, name, type, parent_number, enabled, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (number) DO UPDATE SET name = excluded.name, type = excluded.type, parent_number = excluded.parent_number,
enabled = excluded.enabled, version = excluded.version, updated_at = excluded.updated_at`,
		f.Number, f.Name, string(f.Type), f.ParentNumber, f.Enabled, f.Version, t.s.d.Time(f.UpdatedAt)); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "firm.put", "firm", f.Number, before, audit.Marshal(f))
}

const officeSelect = `SELECT code, firm_number, address, city, postcode, active, version, updated_at FROM offices`

func (r *reader) queryOffices(ctx context.Context, tail string, args ...any) ([]directory.Office, error) {
	rows, err := r.c.Query(ctx, officeSelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.Office
	for rows.Next() {
		var o directory.Office
		var addr []byte
		if err := rows.Scan(&o.Code, &o.FirmNumber, jscan{&addr}, &o.City, &o.Postcode, &o.Active, &o.Version, tscan{&o.UpdatedAt}); err != nil {
			return nil, err
		}
		if err := unmarshalList(addr, &o.Address); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

func unmarshalList(b []byte, dst *[]string) error {
	if len(b) == 0 {
		return nil
	}
	return json.Unmarshal(b, dst)
}

func marshalList(l []string) any {
	if len(l) == 0 {
		return nil
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// GetOffice returns an office by code.
func (r *reader) GetOffice(ctx context.Context, code string) (directory.Office, error) {
	os, err := r.queryOffices(ctx, "WHERE code = ?", code)
	if err != nil {
		return directory.Office{}, fmt.Errorf("store: get office %q: %w", code, err)
	}
	if len(os) == 0 {
		return directory.Office{}, fmt.Errorf("store: get office %q: %w", code, store.ErrNotFound)
	}
	return os[0], nil
}

// ListOffices returns a firm's offices ("" = all) by code.
func (r *reader) ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error) {
	var os []directory.Office
	var err error
	if firmNumber == "" {
		os, err = r.queryOffices(ctx, "ORDER BY code")
	} else {
		os, err = r.queryOffices(ctx, "WHERE firm_number = ? ORDER BY code", firmNumber)
	}
	if err != nil {
		return nil, fmt.Errorf("store: list offices: %w", err)
	}
	return os, nil
}

// PutOffice creates or updates an office by code.
func (t *txn) PutOffice(ctx context.Context, o *directory.Office) error {
	op := fmt.Sprintf("put office %q", o.Code)
	if o.Code == "" || o.FirmNumber == "" {
		return fmt.Errorf("store: %s: code and firm number are required", op)
	}
	if len(o.Address) == 0 {
		o.Address = nil
	}
	cur, err := t.queryOffices(ctx, "WHERE code = ?"+t.forUpdate(), o.Code)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	var before json.RawMessage
	if len(cur) == 1 {
		c := cur[0]
		if c.FirmNumber == o.FirmNumber && slices.Equal(c.Address, o.Address) && c.City == o.City && c.Postcode == o.Postcode && c.Active == o.Active {
			o.Version, o.UpdatedAt = c.Version, c.UpdatedAt
			return nil
		}
		before = audit.Marshal(c)
		o.Version = c.Version + 1
	} else {
		o.Version = 1
	}
	o.UpdatedAt = t.s.nowUTC()
	if _, err := t.c.Exec(ctx, `INSERT INTO offices (code, firm_number, address, city, postcode, active, version, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (code) DO UPDATE SET firm_number = excluded.firm_number, address = excluded.address, city = excluded.city,
postcode = excluded.postcode, active = excluded.active, version = excluded.version, updated_at = excluded.updated_at`,
		o.Code, o.FirmNumber, marshalList(o.Address), o.City, o.Postcode, o.Active, o.Version, t.s.d.Time(o.UpdatedAt)); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "office.put", "office", o.Code, before, audit.Marshal(o))
}

// ListFirmMemberships returns a user's firm memberships by firm number.
func (r *reader) ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error) {
	rows, err := r.c.Query(ctx, `SELECT user_id, firm_number, source FROM firm_memberships WHERE user_id = ? ORDER BY firm_number`, userID)
	if err != nil {
		return nil, fmt.Errorf("store: list firm memberships of %q: %w", userID, err)
	}
	defer rows.Close()
	var out []directory.FirmMembership
	for rows.Next() {
		var m directory.FirmMembership
		if err := rows.Scan(&m.UserID, &m.FirmNumber, &m.Source); err != nil {
			return nil, fmt.Errorf("store: list firm memberships of %q: %w", userID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// PutFirmMembership creates or updates a membership.
func (t *txn) PutFirmMembership(ctx context.Context, m directory.FirmMembership) error {
	op := fmt.Sprintf("put firm membership %q/%q", m.UserID, m.FirmNumber)
	if m.UserID == "" || m.FirmNumber == "" {
		return fmt.Errorf("store: %s: user id and firm number are required", op)
	}
	var src string
	err := t.c.QueryRow(ctx, `SELECT source FROM firm_memberships WHERE user_id = ? AND firm_number = ?`+t.forUpdate(), m.UserID, m.FirmNumber).Scan(&src)
	var before json.RawMessage
	switch {
	case err == nil && src == m.Source:
		return nil
	case err == nil:
		before = audit.Marshal(directory.FirmMembership{UserID: m.UserID, FirmNumber: m.FirmNumber, Source: src})
	case !errors.Is(err, ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if _, err := t.c.Exec(ctx, `INSERT INTO firm_memberships (user_id, firm_number, source) VALUES (?, ?, ?)
ON CONFLICT (user_id, firm_number) DO UPDATE SET source = excluded.source`, m.UserID, m.FirmNumber, m.Source); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "firm_membership.put", "user", m.UserID, before, audit.Marshal(m))
}

// RemoveFirmMembership removes a membership (no-op when absent).
func (t *txn) RemoveFirmMembership(ctx context.Context, userID, firmNumber string) error {
	op := fmt.Sprintf("remove firm membership %q/%q", userID, firmNumber)
	var src string
	err := t.c.QueryRow(ctx, `SELECT source FROM firm_memberships WHERE user_id = ? AND firm_number = ?`+t.forUpdate(), userID, firmNumber).Scan(&src)
	if errors.Is(err, ErrNoRows) {
		return nil
	} else if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if _, err := t.c.Exec(ctx, `DELETE FROM firm_memberships WHERE user_id = ? AND firm_number = ?`, userID, firmNumber); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return t.record(ctx, "firm_membership.remove", "user", userID,
		audit.Marshal(directory.FirmMembership{UserID: userID, FirmNumber: firmNumber, Source: src}), nil)
}

const legacySelect = `SELECT login, firm_number, email, given_name, family_name, office_codes, user_id, version, updated_at FROM legacy_logins`

func (r *reader) queryLegacy(ctx context.Context, tail string, args ...any) ([]directory.LegacyLogin, error) {
	rows, err := r.c.Query(ctx, legacySelect+" "+tail, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []directory.LegacyLogin
	for rows.Next() {
		var l directory.LegacyLogin
		var codes []byte
		if err := rows.Scan(&l.Login, &l.FirmNumber, &l.Email, &l.GivenName, &l.FamilyName, jscan{&codes}, &l.UserID, &l.Version, tscan{&l.UpdatedAt}); err != nil {
			return nil, err
		}
		if err := unmarshalList(codes, &l.OfficeCodes); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// GetLegacyLogin returns a legacy login.
func (r *reader) GetLegacyLogin(ctx context.Context, login string) (directory.LegacyLogin, error) {
	ls, err := r.queryLegacy(ctx, "WHERE login = ?", login)
	if err != nil {
		return directory.LegacyLogin{}, fmt.Errorf("store: get legacy login %q: %w", login, err)
	}
	if len(ls) == 0 {
		return directory.LegacyLogin{}, fmt.Errorf("store: get legacy login %q: %w", login, store.ErrNotFound)
	}
	return ls[0], nil
}

// ListLegacyLogins selects legacy logins (e-mail matched case-insensitively).
func (r *reader) ListLegacyLogins(ctx context.Context, q store.LegacyLoginQuery) ([]directory.LegacyLogin, error) {
	var conds []string
	var args []any
	if q.FirmNumber != "" {
		conds, args = append(conds, "firm_number = ?"), append(args, q.FirmNumber)
	}
	if q.Email != "" {
		conds, args = append(conds, "email_lc = ?"), append(args, strings.ToLower(q.Email))
	}
	if q.UserID != "" {
		// user_id <> '' lets PostgreSQL use its partial index (migration 0053).
		conds, args = append(conds, "user_id <> '' AND user_id = ?"), append(args, q.UserID)
	}
	tail := ""
	if len(conds) > 0 {
		tail = "WHERE " + strings.Join(conds, " AND ")
	}
	ls, err := r.queryLegacy(ctx, tail+" ORDER BY login", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list legacy logins: %w", err)
	}
	return ls, nil
}

// PutLegacyLogin creates or updates a legacy login by login.
func (t *txn) PutLegacyLogin(ctx context.Context, l *directory.LegacyLogin) error {
	op := fmt.Sprintf("put legacy login %q", l.Login)
	if l.Login == "" || l.FirmNumber == "" {
		return fmt.Errorf("store: %s: login and firm number are required", op)
	}
	l.OfficeCodes = dedupe(l.OfficeCodes)
	if len(l.OfficeCodes) == 0 {
		l.OfficeCodes = nil
	}
	cur, err := t.queryLegacy(ctx, "WHERE login = ?"+t.forUpdate(), l.Login)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	var before json.RawMessage
	if len(cur) == 1 {
		c := cur[0]
		if c.FirmNumber == l.FirmNumber && c.Email == l.Email && c.GivenName == l.GivenName && c.FamilyName == l.FamilyName &&
			slices.Equal(c.OfficeCodes, l.OfficeCodes) && c.UserID == l.UserID {
			l.Version, l.UpdatedAt = c.Version, c.UpdatedAt
			return nil
		}
		before = audit.Marshal(c)
		l.Version = c.Version + 1
	} else {
		l.Version = 1
	}
	l.UpdatedAt = t.s.nowUTC()
	if _, err := t.c.Exec(ctx, `INSERT INTO legacy_logins (login, firm_number, email, email_lc, given_name, family_name, office_codes, user_id, version, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (login) DO UPDATE SET firm_number = excluded.firm_number, email = excluded.email, email_lc = excluded.email_lc,
given_name = excluded.given_name, family_name = excluded.family_name, office_codes = excluded.office_codes,
user_id = excluded.user_id, version = excluded.version, updated_at = excluded.updated_at`,
		l.Login, l.FirmNumber, l.Email, strings.ToLower(l.Email), l.GivenName, l.FamilyName, marshalList(l.OfficeCodes),
		l.UserID, l.Version, t.s.d.Time(l.UpdatedAt)); err != nil {
		return fmt.Errorf("store: %s: %w", op, t.s.mapErr(err))
	}
	return t.record(ctx, "legacy_login.put", "legacy_login", l.Login, before, audit.Marshal(l))
}
