package caseaccess

import (
	"context"
	"encoding/json"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
)

// Role is a case role given by an individual invite.
type Role string

// Case roles.
const (
	RoleProsecutor                 Role = "prosecutor"
	RoleDefenceAdvocate            Role = "defence-advocate"
	RoleFeePaidJudge               Role = "fee-paid-judge"
	RoleOutsideProsecutingAdvocate Role = "outside-prosecuting-advocate"
)

// Roles lists the valid case roles.
var Roles = []Role{RoleProsecutor, RoleDefenceAdvocate, RoleFeePaidJudge, RoleOutsideProsecutingAdvocate}

// Valid reports whether r is a known case role.
func (r Role) Valid() bool {
	for _, k := range Roles {
		if r == k {
			return true
		}
	}
	return false
}

// NeedsDefendants reports whether an invite with r must name defendants.
func (r Role) NeedsDefendants() bool { return r == RoleDefenceAdvocate }

// CanGrant reports whether a user invited with r may invite others.
func (r Role) CanGrant() bool { return r == RoleProsecutor || r == RoleOutsideProsecutingAdvocate }

// Case is a court case, keyed by its reference.
type Case struct {
	Ref        string    `json:"ref"`
	Title      string    `json:"title,omitempty"`
	Defendants []string  `json:"defendants,omitempty"`
	CreatedBy  string    `json:"createdBy,omitempty"` // audit actor
	CreatedAt  time.Time `json:"createdAt"`
}

// Revoke reasons.
const (
	ReasonRevoked = "revoked"
	ReasonExpired = "expired"
)

// Invite is one user's individual access to a case.
type Invite struct {
	ID           string     `json:"id"`
	CaseRef      string     `json:"caseRef"`
	UserID       string     `json:"userId"`
	Role         Role       `json:"role"`
	Defendants   []string   `json:"defendants,omitempty"`
	ExpiresAt    *time.Time `json:"expiresAt,omitempty"`
	Message      string     `json:"message,omitempty"`
	InviterID    string     `json:"inviterId,omitempty"` // "" for a case owner's invite
	CreatedAt    time.Time  `json:"createdAt"`
	RevokedAt    *time.Time `json:"revokedAt,omitempty"`
	RevokeReason string     `json:"revokeReason,omitempty"` // revoked or expired
}

// Live reports whether the invite gives access at now.
func (i Invite) Live(now time.Time) bool {
	return i.RevokedAt == nil && (i.ExpiresAt == nil || i.ExpiresAt.After(now))
}

// GroupGrant gives access to users with a usual role, optionally only at
// a location ("" = every location).
type GroupGrant struct {
	ID        string    `json:"id"`
	CaseRef   string    `json:"caseRef"`
	UsualRole string    `json:"usualRole"`
	Location  string    `json:"location,omitempty"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// DomainGrant gives access to users with an e-mail at Domain, for the
// given defendants, optionally only at a location.
type DomainGrant struct {
	ID         string    `json:"id"`
	CaseRef    string    `json:"caseRef"`
	Domain     string    `json:"domain"`
	Defendants []string  `json:"defendants"`
	Location   string    `json:"location,omitempty"`
	CreatedBy  string    `json:"createdBy,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
}

// ViaKind names the kind of grant a decision used.
type ViaKind string

// Grant kinds.
const (
	ViaInvite   ViaKind = "invite"
	ViaGroup    ViaKind = "group"
	ViaDomain   ViaKind = "domain"
	ViaRetained ViaKind = "retained"
)

// Access records that a user has accessed a case: when first, and through
// which grant last. RetainedAt is set when that grant (group or domain) was
// removed: the user keeps access with that provenance. Grants lists every
// group and domain grant the user has accessed the case through (invites
// are never retained, so they are not listed); an entry's RetainedAt is set
// when that grant was removed while it still covered the user.
type Access struct {
	CaseRef       string      `json:"caseRef"`
	UserID        string      `json:"userId"`
	FirstAt       time.Time   `json:"firstAt"`
	ViaKind       ViaKind     `json:"viaKind"`
	ViaID         string      `json:"viaId"`
	ViaDetail     string      `json:"viaDetail,omitempty"`
	Defendants    []string    `json:"defendants,omitempty"`
	AllDefendants bool        `json:"allDefendants"`
	RetainedAt    *time.Time  `json:"retainedAt,omitempty"`
	Grants        []UsedGrant `json:"grants,omitempty"`
}

// UsedGrant is a group or domain grant through which a user has accessed a
// case, with what it gave them.
type UsedGrant struct {
	Kind          ViaKind    `json:"kind"`
	ID            string     `json:"id"`
	Detail        string     `json:"detail,omitempty"`
	Defendants    []string   `json:"defendants,omitempty"`
	AllDefendants bool       `json:"allDefendants,omitempty"`
	FirstAt       time.Time  `json:"firstAt"`
	RetainedAt    *time.Time `json:"retainedAt,omitempty"`
}

// UsedGrants returns a's grant list; a record written before the list
// existed (migration 0051) yields its last group or domain grant.
func (a Access) UsedGrants() []UsedGrant {
	if len(a.Grants) > 0 || (a.ViaKind != ViaGroup && a.ViaKind != ViaDomain) {
		return a.Grants
	}
	return []UsedGrant{{Kind: a.ViaKind, ID: a.ViaID, Detail: a.ViaDetail, Defendants: a.Defendants,
		AllDefendants: a.AllDefendants, FirstAt: a.FirstAt, RetainedAt: a.RetainedAt}}
}

// Facts is what a decision reads about a user and a case, in one query.
type Facts struct {
	// User is the user by id; its Emails are not loaded (Email, the
	// primary one, is).
	User directory.User
	// CaseFound is false when the case does not exist.
	CaseFound bool
	Case      Case
	Invite    *Invite // the user's invite not yet revoked, if any
	Access    *Access // the user's access record, if any
	// GroupGrants and DomainGrants count the case's grants (a decision
	// lists them only when there are some).
	GroupGrants, DomainGrants int
}

// Notification kinds (outbox).
const (
	NoteInviteCreated = "invite.created"
	NoteInviteExpired = "invite.expired"
)

// Notification is one outbox event for a mailer: who to tell about what.
type Notification struct {
	ID          int64           `json:"id"`
	Kind        string          `json:"kind"`
	CaseRef     string          `json:"caseRef"`
	InviteID    string          `json:"inviteId,omitempty"`
	RecipientID string          `json:"recipientId"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
	SentAt      *time.Time      `json:"sentAt,omitempty"`
}

// InviteQuery selects invites; empty fields match everything. Ordered by
// created time then id.
type InviteQuery struct {
	CaseRef        string
	UserID         string
	IncludeRevoked bool
	Limit          int // 0 = no limit
}

// Reader is what caseaccess reads from the store. Missing objects are
// store.ErrNotFound (wrapped).
type Reader interface {
	GetUser(ctx context.Context, id string) (directory.User, error)
	GetUserByUserName(ctx context.Context, userName string) (directory.User, error)
	GetUserByEmail(ctx context.Context, email string) (directory.User, error)

	GetCase(ctx context.Context, ref string) (Case, error)
	GetInvite(ctx context.Context, id string) (Invite, error)
	// LiveInvite returns the (case, user) invite not yet revoked (it may
	// have passed its expiry and not been swept yet).
	LiveInvite(ctx context.Context, caseRef, userID string) (Invite, error)
	ListInvites(ctx context.Context, q InviteQuery) ([]Invite, error)
	ListGroupGrants(ctx context.Context, caseRef string) ([]GroupGrant, error)
	ListDomainGrants(ctx context.Context, caseRef string) ([]DomainGrant, error)
	GetAccess(ctx context.Context, caseRef, userID string) (Access, error)
	// AccessFacts reads, in one query, what a decision needs about user
	// userID on a case: the user (ErrNotFound when no user has that id),
	// whether the case exists, the case, the user's invite not yet revoked,
	// their access record and how many group and domain grants the case has.
	AccessFacts(ctx context.Context, caseRef, userID string) (Facts, error)
	// ListGrantors lists the active users holding a live, unexpired invite
	// to the case with one of roles (at most 100), by userName.
	ListGrantors(ctx context.Context, caseRef string, roles []Role, now time.Time) ([]Grantor, error)
	// ListAccess lists the users who have accessed a case, by first access
	// (locked for update inside a transaction).
	ListAccess(ctx context.Context, caseRef string) ([]Access, error)
	// NextExpiry is the earliest expiry of an invite not yet revoked.
	NextExpiry(ctx context.Context) (t time.Time, ok bool, err error)
	// FirmsForEmailDomains returns the firms (primary firm or membership)
	// of users with an e-mail at any of domains.
	FirmsForEmailDomains(ctx context.Context, domains []string) ([]directory.Firm, error)
	ListNotifications(ctx context.Context, afterID int64, limit int) ([]Notification, error)
}

// Tx is a store transaction; every mutating call records its audit event
// in the same transaction.
type Tx interface {
	Reader
	CreateCase(ctx context.Context, c *Case) error     // ErrConflict when the ref exists
	CreateInvite(ctx context.Context, i *Invite) error // ErrConflict when a live invite exists
	SetInviteExpiry(ctx context.Context, id string, expiresAt *time.Time) (Invite, error)
	RevokeInvite(ctx context.Context, id string, at time.Time, reason string) (Invite, error)
	// ExpireDue revokes (reason expired) up to limit invites whose expiry
	// is at or before now, earliest first, and returns them.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]Invite, error)
	AddGroupGrant(ctx context.Context, g *GroupGrant) error   // ErrConflict on same role+location
	AddDomainGrant(ctx context.Context, g *DomainGrant) error // ErrConflict on same domain+location
	RemoveGroupGrant(ctx context.Context, caseRef, id string) (GroupGrant, error)
	RemoveDomainGrant(ctx context.Context, caseRef, id string) (DomainGrant, error)
	// InsertAccess records a first access (audit "case.access.first") in
	// one statement; it returns false, writing nothing, when the user
	// already has a record (a concurrent decision made it).
	InsertAccess(ctx context.Context, a *Access) (bool, error)
	// UpdateAccess overwrites the (case, user) record with after, audited
	// as action with before.
	UpdateAccess(ctx context.Context, action string, before, after *Access) error
	AddNotifications(ctx context.Context, ns []Notification) error
}

// Store is the store as caseaccess uses it (store/sqlstore implements it
// through (*sqlstore.Store).CaseAccess()).
type Store interface {
	Reader
	// UpdateCases runs fn in one audited transaction stamped with m.
	UpdateCases(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx Tx) error) error
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}
