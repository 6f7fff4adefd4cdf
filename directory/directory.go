package directory

import (
	"encoding/json"
	"time"
)

// FirmType is a provider firm's type, as DOMAIN.md spells it.
type FirmType string

// Firm types.
const (
	FirmLegalServicesProvider FirmType = "LEGAL_SERVICES_PROVIDER"
	FirmChambers              FirmType = "CHAMBERS"
	FirmAdvocate              FirmType = "ADVOCATE"
)

// Valid reports whether t is one of the known firm types.
func (t FirmType) Valid() bool {
	switch t {
	case FirmLegalServicesProvider, FirmChambers, FirmAdvocate:
		return true
	}
	return false
}

// Email is one e-mail address of a user (SCIM multi-valued "emails").
type Email struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

// User is a person known to dirsyncd. UserName and the primary e-mail are
// unique case-insensitively among users that are not deleted.
type User struct {
	ID          string  `json:"id"`
	UserName    string  `json:"userName"`
	ExternalID  string  `json:"externalId,omitempty"` // as set by the provisioning SCIM client
	Email       string  `json:"email,omitempty"`      // primary e-mail (unique, case-insensitive)
	Emails      []Email `json:"emails,omitempty"`     // all e-mails; the primary one equals Email
	GivenName   string  `json:"givenName,omitempty"`
	FamilyName  string  `json:"familyName,omitempty"`
	DisplayName string  `json:"displayName,omitempty"`
	Active      bool    `json:"active"`
	UserType    string  `json:"userType,omitempty"`
	FirmNumber  string  `json:"firmNumber,omitempty"` // primary firm, if known
	UsualRole   string  `json:"usualRole,omitempty"`  // case access: usual role
	Location    string  `json:"location,omitempty"`   // case access: location
	// Attrs holds further attributes (SCIM enterprise extension, phone
	// numbers, LDAP attributes) as a JSON object. Never a password.
	Attrs     json.RawMessage `json:"attrs,omitempty"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
	DeletedAt *time.Time      `json:"deletedAt,omitempty"` // soft delete: hidden from SCIM, history kept
}

// SourceLink ties a user to one source record: a SCIM client and its
// externalId, an LDAP entry (entryUUID/objectGUID and DN), or a CWA login.
type SourceLink struct {
	UserID     string     `json:"userId"`
	Source     string     `json:"source"` // "scim:<client>", "ldap:<name>", "cwa"
	Key        string     `json:"key"`    // stable id within the source
	DN         string     `json:"dn,omitempty"`
	GoneAt     *time.Time `json:"goneAt,omitempty"` // the source no longer has it
	LastSeenAt time.Time  `json:"lastSeenAt"`
}

// Group is a group from a source (SCIM push or LDAP).
type Group struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	SourceKey   string          `json:"sourceKey,omitempty"`
	ExternalID  string          `json:"externalId,omitempty"`
	DisplayName string          `json:"displayName"`
	DN          string          `json:"dn,omitempty"`
	Attrs       json.RawMessage `json:"attrs,omitempty"`
	Version     int64           `json:"version"`
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
	DeletedAt   *time.Time      `json:"deletedAt,omitempty"`
}

// Firm is a provider firm keyed by its firm number.
type Firm struct {
	Number       string    `json:"number"`
	Name         string    `json:"name"`
	Type         FirmType  `json:"type"`
	ParentNumber string    `json:"parentNumber,omitempty"`
	Enabled      bool      `json:"enabled"`
	Version      int64     `json:"version"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Office is an office account of exactly one firm.
type Office struct {
	Code       string    `json:"code"` // 6 characters, e.g. 0Q731M
	FirmNumber string    `json:"firmNumber"`
	Address    []string  `json:"address,omitempty"`
	City       string    `json:"city,omitempty"`
	Postcode   string    `json:"postcode,omitempty"`
	Active     bool      `json:"active"`
	Version    int64     `json:"version"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// FirmMembership (a "profile") says a user belongs to a firm.
type FirmMembership struct {
	UserID     string `json:"userId"`
	FirmNumber string `json:"firmNumber"`
	Source     string `json:"source"`
}

// ProvenanceKind says where a grant comes from.
type ProvenanceKind string

// Provenance kinds.
const (
	ProvRule   ProvenanceKind = "rule"   // a mapping rule produced it (owned by reconcile)
	ProvManual ProvenanceKind = "manual" // an admin granted it by hand
	ProvSource ProvenanceKind = "source" // a source system asserted it (e.g. cwa)
)

// Provenance is one reason a grant exists.
type Provenance struct {
	Kind   ProvenanceKind `json:"kind"`
	Ref    string         `json:"ref"`              // rule name, actor, or source name
	Detail string         `json:"detail,omitempty"` // e.g. which group or attribute matched
}

// Grant is a role of a service held by a user in a firm, with an office scope.
type Grant struct {
	ID         string       `json:"id"`
	UserID     string       `json:"userId"`
	FirmNumber string       `json:"firmNumber"`
	Service    string       `json:"service"`
	Role       string       `json:"role"`
	AllOffices bool         `json:"allOffices"`
	Offices    []string     `json:"offices,omitempty"` // sorted office codes when !AllOffices
	Provenance []Provenance `json:"provenance"`
	Version    int64        `json:"version"`
	CreatedAt  time.Time    `json:"createdAt"`
	UpdatedAt  time.Time    `json:"updatedAt"`
}

// GrantKey identifies a grant: one per (user, firm, service, role).
type GrantKey struct {
	UserID, FirmNumber, Service, Role string
}

// Key returns the grant's identity.
func (g Grant) Key() GrantKey {
	return GrantKey{UserID: g.UserID, FirmNumber: g.FirmNumber, Service: g.Service, Role: g.Role}
}

// RunStatus is the outcome of a job run.
type RunStatus string

// Run statuses.
const (
	RunRunning RunStatus = "running"
	RunOK      RunStatus = "ok"
	RunFailed  RunStatus = "failed"
	RunAborted RunStatus = "aborted"
	RunHeld    RunStatus = "held"
)

// Run records one execution of a job (sync, reconcile, expiry).
type Run struct {
	ID         string           `json:"id"`
	Job        string           `json:"job"`
	Trigger    string           `json:"trigger"` // "schedule" or "manual"
	Status     RunStatus        `json:"status"`
	StartedAt  time.Time        `json:"startedAt"`
	FinishedAt *time.Time       `json:"finishedAt,omitempty"`
	Counts     map[string]int64 `json:"counts,omitempty"`
	Error      string           `json:"error,omitempty"`
	PlanHash   string           `json:"planHash,omitempty"`
	Plan       json.RawMessage  `json:"plan,omitempty"` // stored plan of a held run
}

// RunItem is one object a run touched or reported.
type RunItem struct {
	RunID      string          `json:"runId"`
	Seq        int64           `json:"seq"`
	Action     string          `json:"action"` // created, updated, gone, disputed, failed, dropped, ...
	ObjectType string          `json:"objectType"`
	ObjectID   string          `json:"objectId"`
	Reason     string          `json:"reason,omitempty"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
}

// LegacyLogin is a legacy CWA user login of a firm, with the office codes it
// has access to; UserID is set when it is linked to a dirsyncd user by e-mail.
type LegacyLogin struct {
	Login       string    `json:"login"`
	FirmNumber  string    `json:"firmNumber"`
	Email       string    `json:"email,omitempty"`
	GivenName   string    `json:"givenName,omitempty"`
	FamilyName  string    `json:"familyName,omitempty"`
	OfficeCodes []string  `json:"officeCodes,omitempty"` // sorted
	UserID      string    `json:"userId,omitempty"`
	Version     int64     `json:"version"`
	UpdatedAt   time.Time `json:"updatedAt"`
}
