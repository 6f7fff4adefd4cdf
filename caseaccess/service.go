package caseaccess

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Options configure a Service.
type Options struct {
	Store Store
	Now   func() time.Time // defaults to time.Now
	Log   *zap.Logger
	// ChambersDomains are domains always refused for domain grants
	// (config caseAccess.chambersDomains), beside those tied to a chambers
	// firm through its users' e-mails.
	ChambersDomains []string
	// OnChange runs after every committed change that may move the next
	// expiry (the Expirer's Kick).
	OnChange func()
}

// Service applies the case-access rules over a Store.
type Service struct {
	st       Store
	now      func() time.Time
	log      *zap.Logger
	chambers map[string]bool
	onChange func()
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("caseaccess: a store is required")
	}
	s := &Service{st: o.Store, now: o.Now, log: o.Log, chambers: map[string]bool{}, onChange: o.OnChange}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("caseaccess")
	for _, d := range o.ChambersDomains {
		n, ok := NormalizeDomain(d)
		if !ok {
			return nil, fmt.Errorf("caseaccess: chambers domain %q is malformed", d)
		}
		s.chambers[n] = true
	}
	return s, nil
}

// SetOnChange sets the change hook (wiring: the Expirer is built after the
// Service).
func (s *Service) SetOnChange(fn func()) { s.onChange = fn }

func (s *Service) changed() {
	if s.onChange != nil {
		s.onChange()
	}
}

func (s *Service) nowUTC() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// ResolveUser finds a user by id, userName or primary e-mail. Deleted
// users are not found. field names the request field for the error.
func ResolveUser(ctx context.Context, r Reader, field, ref string) (directory.User, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return directory.User{}, invalid(field, "is required")
	}
	u, err := r.GetUser(ctx, ref)
	if err == nil && u.DeletedAt == nil {
		return u, nil
	}
	if err != nil && !isNotFound(err) {
		return directory.User{}, fmt.Errorf("caseaccess: get user %q: %w", ref, err)
	}
	return resolveByName(ctx, r, field, ref)
}

// resolveByName finds a user by userName or primary e-mail.
func resolveByName(ctx context.Context, r Reader, field, ref string) (directory.User, error) {
	u, err := r.GetUserByUserName(ctx, ref)
	if err == nil {
		return u, nil
	}
	if !isNotFound(err) {
		return directory.User{}, fmt.Errorf("caseaccess: get user %q: %w", ref, err)
	}
	if strings.Contains(ref, "@") {
		u, err = r.GetUserByEmail(ctx, ref)
		if err == nil {
			return u, nil
		}
		if !isNotFound(err) {
			return directory.User{}, fmt.Errorf("caseaccess: get user %q: %w", ref, err)
		}
	}
	return directory.User{}, notFound(field, "no user %q (by id, userName or e-mail)", ref)
}

func getCase(ctx context.Context, r Reader, ref string) (Case, error) {
	if e := checkRef(ref); e != nil {
		return Case{}, e
	}
	c, err := r.GetCase(ctx, ref)
	if isNotFound(err) {
		return Case{}, notFound("ref", "no case %q", ref)
	}
	if err != nil {
		return Case{}, fmt.Errorf("caseaccess: get case %q: %w", ref, err)
	}
	return c, nil
}

// CaseInput creates a case. Owners are users given a prosecutor invite
// (the case's first grantors).
type CaseInput struct {
	Ref        string   `json:"ref"`
	Title      string   `json:"title,omitempty"`
	Defendants []string `json:"defendants,omitempty"`
	Owners     []string `json:"owners,omitempty"`
}

// CreateCase creates a case and its owners' prosecutor invites.
func (s *Service) CreateCase(ctx context.Context, m audit.Meta, in CaseInput) (Case, []Invite, error) {
	if e := checkRef(in.Ref); e != nil {
		return Case{}, nil, e
	}
	if e := checkText("title", in.Title, maxTextLen, false); e != nil {
		return Case{}, nil, e
	}
	c := Case{Ref: in.Ref, Title: in.Title, Defendants: cleanList(in.Defendants), CreatedBy: m.Actor, CreatedAt: s.nowUTC()}
	if len(c.Defendants) > maxDefendants {
		return Case{}, nil, invalid("defendants", "at most %d defendants", maxDefendants)
	}
	for _, d := range c.Defendants {
		if e := checkText("defendants", d, maxTextLen, true); e != nil {
			return Case{}, nil, e
		}
	}
	var invites []Invite
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		if _, err := tx.GetCase(ctx, in.Ref); err == nil {
			return conflict("ref", "case %q already exists", in.Ref)
		} else if !isNotFound(err) {
			return fmt.Errorf("caseaccess: get case %q: %w", in.Ref, err)
		}
		if err := tx.CreateCase(ctx, &c); err != nil {
			return fmt.Errorf("caseaccess: create case %q: %w", in.Ref, err)
		}
		seen := map[string]bool{}
		for _, o := range in.Owners {
			u, err := ResolveUser(ctx, tx, "owners", o)
			if err != nil {
				return err
			}
			if seen[u.ID] {
				continue
			}
			seen[u.ID] = true
			inv := Invite{ID: uuid.NewString(), CaseRef: c.Ref, UserID: u.ID, Role: RoleProsecutor, CreatedAt: c.CreatedAt}
			if err := tx.CreateInvite(ctx, &inv); err != nil {
				return fmt.Errorf("caseaccess: create owner invite: %w", err)
			}
			if err := tx.AddNotifications(ctx, inviteNotes(NoteInviteCreated, inv, c, c.CreatedAt)); err != nil {
				return fmt.Errorf("caseaccess: notify owner: %w", err)
			}
			invites = append(invites, inv)
		}
		return nil
	})
	if err != nil {
		return Case{}, nil, err
	}
	return c, invites, nil
}

// InviteInput invites one user. User and Inviter are user ids, userNames
// or e-mails.
type InviteInput struct {
	CaseRef    string     `json:"-"`
	User       string     `json:"user"`
	Inviter    string     `json:"inviter"`
	Role       Role       `json:"role"`
	Defendants []string   `json:"defendants,omitempty"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	Message    string     `json:"message,omitempty"`
}

// Invite validates and records an invite and its two notifications.
func (s *Service) Invite(ctx context.Context, m audit.Meta, in InviteInput) (Invite, error) {
	now := s.nowUTC()
	if !in.Role.Valid() {
		return Invite{}, invalid("role", "%q is not a case role (one of %s)", in.Role, rolesList())
	}
	ds := cleanList(in.Defendants)
	if in.Role.NeedsDefendants() && len(ds) == 0 {
		return Invite{}, invalid("defendants", "a %s invite must name at least one defendant", in.Role)
	}
	if e := checkExpiry("expiresAt", in.ExpiresAt, now); e != nil {
		return Invite{}, e
	}
	if e := checkText("message", in.Message, maxMessageLen, false); e != nil {
		return Invite{}, e
	}
	var exp *time.Time
	if in.ExpiresAt != nil {
		t := in.ExpiresAt.UTC().Truncate(time.Microsecond)
		exp = &t
	}
	var inv Invite
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		c, err := getCase(ctx, tx, in.CaseRef)
		if err != nil {
			return err
		}
		if e := checkDefendants("defendants", c, ds); e != nil {
			return e
		}
		u, err := ResolveUser(ctx, tx, "user", in.User)
		if err != nil {
			return err
		}
		inviter, err := ResolveUser(ctx, tx, "inviter", in.Inviter)
		if err != nil {
			return err
		}
		if err := s.checkGrantor(ctx, tx, c.Ref, inviter, now); err != nil {
			return err
		}
		cur, err := tx.LiveInvite(ctx, c.Ref, u.ID)
		switch {
		case err == nil && cur.Live(now):
			return conflict("user", "user %s already has a live invite %s to case %s", u.UserName, cur.ID, c.Ref)
		case err == nil: // passed its expiry, not swept yet: expire it now
			if err := s.expireInTx(ctx, tx, []Invite{cur}, now, true); err != nil {
				return err
			}
		case !isNotFound(err):
			return fmt.Errorf("caseaccess: read invite: %w", err)
		}
		inv = Invite{ID: uuid.NewString(), CaseRef: c.Ref, UserID: u.ID, Role: in.Role, Defendants: ds,
			ExpiresAt: exp, Message: in.Message, InviterID: inviter.ID, CreatedAt: now}
		if err := tx.CreateInvite(ctx, &inv); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return conflict("user", "user %s already has a live invite to case %s", u.UserName, c.Ref)
			}
			return fmt.Errorf("caseaccess: create invite: %w", err)
		}
		return tx.AddNotifications(ctx, inviteNotes(NoteInviteCreated, inv, c, now))
	})
	if err != nil {
		return Invite{}, err
	}
	s.changed()
	return inv, nil
}

func rolesList() string {
	var b []string
	for _, r := range Roles {
		b = append(b, string(r))
	}
	return strings.Join(b, ", ")
}

// checkGrantor: the inviter needs a live granting invite on the case.
func (s *Service) checkGrantor(ctx context.Context, r Reader, ref string, u directory.User, now time.Time) error {
	if !u.Active || u.DeletedAt != nil {
		return forbidden("inviter", "user %s is not active", u.UserName)
	}
	inv, err := r.LiveInvite(ctx, ref, u.ID)
	if isNotFound(err) || (err == nil && !inv.Live(now)) {
		return forbidden("inviter", "user %s has no live invite to case %s and cannot invite (only users invited as %s or %s can)",
			u.UserName, ref, RoleProsecutor, RoleOutsideProsecutingAdvocate)
	}
	if err != nil {
		return fmt.Errorf("caseaccess: read inviter's invite: %w", err)
	}
	if !inv.Role.CanGrant() {
		return forbidden("inviter", "user %s has access to case %s as %s, which cannot invite (granting roles: %s, %s)",
			u.UserName, ref, inv.Role, RoleProsecutor, RoleOutsideProsecutingAdvocate)
	}
	return nil
}

// notePayload is what a mailer needs to write the message.
type notePayload struct {
	Recipient string     `json:"recipient"` // invitee or inviter
	Role      Role       `json:"role"`
	Title     string     `json:"caseTitle,omitempty"`
	UserID    string     `json:"userId"`
	InviterID string     `json:"inviterId,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Message   string     `json:"message,omitempty"`
}

func inviteNotes(kind string, inv Invite, c Case, now time.Time) []Notification {
	mk := func(recipient, id string) Notification {
		p, _ := json.Marshal(notePayload{Recipient: recipient, Role: inv.Role, Title: c.Title, UserID: inv.UserID,
			InviterID: inv.InviterID, ExpiresAt: inv.ExpiresAt, Message: inv.Message})
		return Notification{Kind: kind, CaseRef: inv.CaseRef, InviteID: inv.ID, RecipientID: id, Payload: p, CreatedAt: now}
	}
	out := []Notification{mk("invitee", inv.UserID)}
	if inv.InviterID != "" {
		out = append(out, mk("inviter", inv.InviterID))
	}
	return out
}

// ListInvites lists a case's invites (live ones unless all).
func (s *Service) ListInvites(ctx context.Context, ref string, all bool) ([]Invite, error) {
	if _, err := getCase(ctx, s.st, ref); err != nil {
		return nil, err
	}
	invs, err := s.st.ListInvites(ctx, InviteQuery{CaseRef: ref, IncludeRevoked: all})
	if err != nil {
		return nil, fmt.Errorf("caseaccess: list invites of %q: %w", ref, err)
	}
	return invs, nil
}

func (s *Service) caseInvite(ctx context.Context, r Reader, ref, id string) (Case, Invite, error) {
	c, err := getCase(ctx, r, ref)
	if err != nil {
		return Case{}, Invite{}, err
	}
	inv, err := r.GetInvite(ctx, id)
	if isNotFound(err) || (err == nil && inv.CaseRef != ref) {
		return Case{}, Invite{}, notFound("invite", "no invite %q on case %s", id, ref)
	}
	if err != nil {
		return Case{}, Invite{}, fmt.Errorf("caseaccess: get invite %q: %w", id, err)
	}
	return c, inv, nil
}

// Revoke ends an invite now.
func (s *Service) Revoke(ctx context.Context, m audit.Meta, ref, id string) (Invite, error) {
	now := s.nowUTC()
	var out Invite
	expired := false
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		_, inv, err := s.caseInvite(ctx, tx, ref, id)
		if err != nil {
			return err
		}
		if inv.RevokedAt != nil {
			return conflict("invite", "invite %s already ended (%s)", id, inv.RevokeReason)
		}
		if !inv.Live(now) { // passed its expiry, not swept yet: it ended then, expire it now
			expired = true
			return s.expireInTx(ctx, tx, []Invite{inv}, now, true)
		}
		out, err = tx.RevokeInvite(ctx, id, now, ReasonRevoked)
		if err != nil {
			return fmt.Errorf("caseaccess: revoke invite %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Invite{}, err
	}
	s.changed()
	if expired {
		return Invite{}, conflict("invite", "invite %s already ended (%s)", id, ReasonExpired)
	}
	return out, nil
}

// SetExpiry changes (or, with nil, removes) an invite's expiry.
func (s *Service) SetExpiry(ctx context.Context, m audit.Meta, ref, id string, exp *time.Time) (Invite, error) {
	now := s.nowUTC()
	if e := checkExpiry("expiresAt", exp, now); e != nil {
		return Invite{}, e
	}
	if exp != nil {
		t := exp.UTC().Truncate(time.Microsecond)
		exp = &t
	}
	var out Invite
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		_, inv, err := s.caseInvite(ctx, tx, ref, id)
		if err != nil {
			return err
		}
		if !inv.Live(now) {
			return conflict("invite", "invite %s has already ended", id)
		}
		out, err = tx.SetInviteExpiry(ctx, id, exp)
		if err != nil {
			return fmt.Errorf("caseaccess: set expiry of invite %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Invite{}, err
	}
	s.changed()
	return out, nil
}

// GroupInput adds a group grant.
type GroupInput struct {
	UsualRole string `json:"usualRole"`
	Location  string `json:"location,omitempty"`
}

// AddGroupGrant gives users with a usual role (at a location) access.
func (s *Service) AddGroupGrant(ctx context.Context, m audit.Meta, ref string, in GroupInput) (GroupGrant, error) {
	if e := checkText("usualRole", in.UsualRole, maxTextLen, true); e != nil {
		return GroupGrant{}, e
	}
	if e := checkText("location", in.Location, maxTextLen, false); e != nil {
		return GroupGrant{}, e
	}
	g := GroupGrant{ID: uuid.NewString(), CaseRef: ref, UsualRole: strings.TrimSpace(in.UsualRole),
		Location: strings.TrimSpace(in.Location), CreatedBy: m.Actor, CreatedAt: s.nowUTC()}
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		if _, err := getCase(ctx, tx, ref); err != nil {
			return err
		}
		if err := tx.AddGroupGrant(ctx, &g); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return conflict("usualRole", "case %s already grants %q at location %q", ref, g.UsualRole, g.Location)
			}
			return fmt.Errorf("caseaccess: add group grant: %w", err)
		}
		return nil
	})
	if err != nil {
		return GroupGrant{}, err
	}
	return g, nil
}

// DomainInput adds a domain grant.
type DomainInput struct {
	Domain     string   `json:"domain"`
	Defendants []string `json:"defendants"`
	Location   string   `json:"location,omitempty"`
}

// AddDomainGrant gives users with an e-mail at a solicitor firm's domain
// access for the given defendants.
func (s *Service) AddDomainGrant(ctx context.Context, m audit.Meta, ref string, in DomainInput) (DomainGrant, error) {
	if strings.TrimSpace(in.Domain) == "" {
		return DomainGrant{}, invalid("domain", "is required")
	}
	d, ok := NormalizeDomain(strings.TrimPrefix(strings.TrimSpace(in.Domain), "@"))
	if !ok {
		return DomainGrant{}, invalid("domain", "%q is not a well-formed e-mail domain", in.Domain)
	}
	ds := cleanList(in.Defendants)
	if len(ds) == 0 {
		return DomainGrant{}, invalid("defendants", "a domain grant must name at least one defendant")
	}
	if e := checkText("location", in.Location, maxTextLen, false); e != nil {
		return DomainGrant{}, e
	}
	for _, rd := range relatedDomains(d) {
		if s.chambers[rd] {
			return DomainGrant{}, invalid("domain", "%s is a barristers' chambers domain (configured): only solicitor firms may be granted by domain", d)
		}
	}
	g := DomainGrant{ID: uuid.NewString(), CaseRef: ref, Domain: d, Defendants: ds, Location: strings.TrimSpace(in.Location),
		CreatedBy: m.Actor, CreatedAt: s.nowUTC()}
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		c, err := getCase(ctx, tx, ref)
		if err != nil {
			return err
		}
		if e := checkDefendants("defendants", c, ds); e != nil {
			return e
		}
		firms, err := tx.FirmsForEmailDomains(ctx, relatedDomains(d))
		if err != nil {
			return fmt.Errorf("caseaccess: firms of domain %q: %w", d, err)
		}
		for _, f := range firms {
			if f.Type == directory.FirmChambers {
				return invalid("domain", "%s belongs to chambers %s (%s): only solicitor firms may be granted by domain", d, f.Number, f.Name)
			}
		}
		if err := tx.AddDomainGrant(ctx, &g); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return conflict("domain", "case %s already grants domain %s at location %q", ref, d, g.Location)
			}
			return fmt.Errorf("caseaccess: add domain grant: %w", err)
		}
		return nil
	})
	if err != nil {
		return DomainGrant{}, err
	}
	return g, nil
}

// RemoveGroupGrant removes a group grant; users who accessed the case
// through it keep a retained access. It returns how many were retained.
func (s *Service) RemoveGroupGrant(ctx context.Context, m audit.Meta, ref, id string) (GroupGrant, int64, error) {
	var g GroupGrant
	var n int64
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		if _, err := getCase(ctx, tx, ref); err != nil {
			return err
		}
		var err error
		g, err = tx.RemoveGroupGrant(ctx, ref, id)
		if isNotFound(err) {
			return notFound("grant", "no group grant %q on case %s", id, ref)
		}
		if err != nil {
			return fmt.Errorf("caseaccess: remove group grant: %w", err)
		}
		n, err = s.retain(ctx, tx, ref, ViaGroup, id, func(u directory.User) bool { return groupMatches(g, u) })
		return err
	})
	return g, n, err
}

// RemoveDomainGrant removes a domain grant, like RemoveGroupGrant.
func (s *Service) RemoveDomainGrant(ctx context.Context, m audit.Meta, ref, id string) (DomainGrant, int64, error) {
	var g DomainGrant
	var n int64
	err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
		if _, err := getCase(ctx, tx, ref); err != nil {
			return err
		}
		var err error
		g, err = tx.RemoveDomainGrant(ctx, ref, id)
		if isNotFound(err) {
			return notFound("grant", "no domain grant %q on case %s", id, ref)
		}
		if err != nil {
			return fmt.Errorf("caseaccess: remove domain grant: %w", err)
		}
		n, err = s.retain(ctx, tx, ref, ViaDomain, id, func(u directory.User) bool { return domainMatches(g, userDomains(u), u) })
		return err
	})
	return g, n, err
}

// retain keeps the access of the users who accessed case ref through the
// removed grant (kind, id) and whom it still covered (covers, on their
// current attributes): the grant's entry in their record is marked
// retained (and the record itself when it was the grant used last), one
// audit event "case.access.retain" per user. Users it never let in, or no
// longer covered, get nothing. It returns how many users were retained.
func (s *Service) retain(ctx context.Context, tx Tx, ref string, kind ViaKind, id string, covers func(directory.User) bool) (int64, error) {
	now := s.nowUTC()
	recs, err := tx.ListAccess(ctx, ref)
	if err != nil {
		return 0, fmt.Errorf("caseaccess: retain access: %w", err)
	}
	var n int64
	for _, rec := range recs {
		gs := append([]UsedGrant(nil), rec.UsedGrants()...)
		at := -1
		for i, g := range gs {
			if g.Kind == kind && g.ID == id && g.RetainedAt == nil {
				at = i
			}
		}
		if at < 0 {
			continue
		}
		u, err := tx.GetUser(ctx, rec.UserID)
		if err != nil {
			return 0, fmt.Errorf("caseaccess: retain access: user %q: %w", rec.UserID, err)
		}
		if u.DeletedAt != nil || !covers(u) {
			continue
		}
		next := rec
		t := now
		gs[at].RetainedAt = &t
		next.Grants = gs
		if rec.ViaKind == kind && rec.ViaID == id {
			next.RetainedAt = &t
		}
		if err := tx.UpdateAccess(ctx, "case.access.retain", &rec, &next); err != nil {
			return 0, fmt.Errorf("caseaccess: retain access of %q: %w", rec.UserID, err)
		}
		n++
	}
	return n, nil
}

// CaseView is a case with its grants.
type CaseView struct {
	Case
	Invites      []Invite      `json:"invites"`
	GroupGrants  []GroupGrant  `json:"groupGrants"`
	DomainGrants []DomainGrant `json:"domainGrants"`
}

// GetCase returns the case, its live invites and its grants.
func (s *Service) GetCase(ctx context.Context, ref string) (CaseView, error) {
	c, err := getCase(ctx, s.st, ref)
	if err != nil {
		return CaseView{}, err
	}
	v := CaseView{Case: c, Invites: []Invite{}}
	if v.Invites, err = s.st.ListInvites(ctx, InviteQuery{CaseRef: ref}); err != nil {
		return CaseView{}, fmt.Errorf("caseaccess: list invites: %w", err)
	}
	if v.GroupGrants, err = s.st.ListGroupGrants(ctx, ref); err != nil {
		return CaseView{}, fmt.Errorf("caseaccess: list group grants: %w", err)
	}
	if v.DomainGrants, err = s.st.ListDomainGrants(ctx, ref); err != nil {
		return CaseView{}, fmt.Errorf("caseaccess: list domain grants: %w", err)
	}
	return v, nil
}

// ListAccess lists who has accessed a case (first access, grant used,
// retained or not).
func (s *Service) ListAccess(ctx context.Context, ref string) ([]Access, error) {
	if _, err := getCase(ctx, s.st, ref); err != nil {
		return nil, err
	}
	as, err := s.st.ListAccess(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("caseaccess: list access of %q: %w", ref, err)
	}
	return as, nil
}

// ExpireDue revokes every invite whose expiry is at or before now, in
// batches of batch, and returns how many it revoked.
func (s *Service) ExpireDue(ctx context.Context, m audit.Meta, batch int) (int, error) {
	if batch <= 0 {
		batch = 1000
	}
	total := 0
	for {
		now := s.nowUTC()
		n := 0
		err := s.st.UpdateCases(ctx, m, func(ctx context.Context, tx Tx) error {
			due, err := tx.ExpireDue(ctx, now, batch)
			if err != nil {
				return fmt.Errorf("caseaccess: expire due invites: %w", err)
			}
			n = len(due)
			return s.expireInTx(ctx, tx, due, now, false)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}

// expireInTx writes the notifications of expired invites; with revoke it
// also revokes them (an invite found past its expiry outside the sweep).
func (s *Service) expireInTx(ctx context.Context, tx Tx, due []Invite, now time.Time, revoke bool) error {
	var notes []Notification
	cases := map[string]Case{}
	for _, inv := range due {
		if revoke {
			var err error
			if inv, err = tx.RevokeInvite(ctx, inv.ID, now, ReasonExpired); err != nil {
				return fmt.Errorf("caseaccess: expire invite %q: %w", inv.ID, err)
			}
		}
		c, ok := cases[inv.CaseRef]
		if !ok {
			var err error
			if c, err = tx.GetCase(ctx, inv.CaseRef); err != nil {
				return fmt.Errorf("caseaccess: get case %q: %w", inv.CaseRef, err)
			}
			cases[inv.CaseRef] = c
		}
		notes = append(notes, inviteNotes(NoteInviteExpired, inv, c, now)...)
	}
	if len(notes) == 0 {
		return nil
	}
	return tx.AddNotifications(ctx, notes)
}
