package server

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// AdminStore is what the admin API and the pages read and write.
type AdminStore interface {
	GetUser(ctx context.Context, id string) (directory.User, error)
	GetUserByUserName(ctx context.Context, userName string) (directory.User, error)
	GetUserByEmail(ctx context.Context, email string) (directory.User, error)
	SearchUsers(ctx context.Context, q store.UserSearch) (store.Page[directory.User], error)
	ListUserLinks(ctx context.Context, userID string) ([]directory.SourceLink, error)
	ListFirmMemberships(ctx context.Context, userID string) ([]directory.FirmMembership, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
	GetFirm(ctx context.Context, number string) (directory.Firm, error)
	ListFirms(ctx context.Context) ([]directory.Firm, error)
	ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error)
	GetRun(ctx context.Context, id string) (directory.Run, error)
	ListRuns(ctx context.Context, q store.RunQuery) ([]directory.Run, error)
	ListRunItems(ctx context.Context, q store.RunItemQuery) ([]directory.RunItem, error)
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
	Audit(ctx context.Context, f store.AuditFilter, fn func(audit.Event) error) error
}

// Explainer explains a user's roles (cmd/dirsyncd: reconcile.LoadFacts and
// mapping.Engine.Explain).
type Explainer interface {
	Explain(ctx context.Context, userID string) (mapping.Explanation, error)
}

// Approver applies a held run's plan exactly (reconcile.Reconciler.Approve
// behind an adapter). It returns ErrPlanMismatch (wrapped) when hash is not
// the run's plan hash and ErrNotHeld when the run is not held.
type Approver interface {
	Approve(ctx context.Context, runID, hash, actor string) error
}

// Errors an Approver returns (wrapped).
var (
	ErrPlanMismatch = errors.New("plan hash does not match")
	ErrNotHeld      = errors.New("run is not held")
	ErrPlanStale    = errors.New("plan is stale")
)

// AdminOptions turn on the admin API (users, grants, audit, catalogue,
// firms, held plans) and the pages under /ui.
type AdminOptions struct {
	Store     AdminStore // required
	Catalogue *mapping.Catalogue
	// Status computes Complete/Incomplete from a user's grants
	// (mapping.Engine.StatusOf).
	Status    func([]directory.Grant) mapping.Status
	Explainer Explainer // nil: detail without explain
	Approver  Approver  // nil: approve answers 503
	// OIDC and its configuration; nil OIDC: static tokens only, no pages
	// sign-in.
	OIDC       OIDC
	OIDCConfig config.OIDCConfig
}

type adminState struct {
	store     AdminStore
	cat       *mapping.Catalogue
	status    func([]directory.Grant) mapping.Status
	explainer Explainer
	approver  Approver
	oidc      OIDC
	userClaim string
	cookies   *cookieCodec
	templates map[string]*template.Template
}

// setupAdmin mounts the admin API and the pages.
func (s *Server) setupAdmin(o *AdminOptions) error {
	if o.Store == nil || o.Catalogue == nil || o.Status == nil {
		return errors.New("server: admin needs a store, a catalogue and a status function")
	}
	ttl := o.OIDCConfig.SessionTTL
	if ttl <= 0 {
		ttl = config.DefaultSessionTTL
	}
	s.adm = &adminState{store: o.Store, cat: o.Catalogue, status: o.Status, explainer: o.Explainer, approver: o.Approver,
		oidc: o.OIDC, userClaim: o.OIDCConfig.UserClaim}
	if s.adm.userClaim == "" {
		s.adm.userClaim = config.DefaultOIDCUserClaim
	}
	if o.OIDC != nil {
		key := o.OIDCConfig.SessionKey.Value()
		if len(key) < 32 {
			return errors.New("server: oidc.sessionKey must be at least 32 bytes")
		}
		s.adm.cookies = &cookieCodec{key: []byte(key), secure: !o.OIDCConfig.InsecureCookies, ttl: ttl, now: s.now}
	}
	api := func(pattern string, h func(http.ResponseWriter, *http.Request, *caller)) {
		s.mux.Handle(pattern, route(pattern, s.apiAuth(h)))
	}
	api("GET /api/v1/me", s.getMe)
	api("GET /api/v1/users", s.searchUsers)
	api("GET /api/v1/users/{id}", s.getUser)
	api("POST /api/v1/users/{id}/grants", s.postGrant)
	api("DELETE /api/v1/users/{id}/grants/{firm}/{service}/{role}", s.deleteGrant)
	api("GET /api/v1/audit", s.getAudit)
	api("GET /api/v1/catalogue", s.getCatalogue)
	api("GET /api/v1/firms", s.listFirms)
	api("GET /api/v1/firms/{number}", s.getFirm)
	s.Handle("GET /api/v1/runs/{id}/plan", auth.ScopeAdminRead, http.HandlerFunc(s.getPlan))
	s.Handle("POST /api/v1/runs/{id}/approve", auth.ScopeSupport, http.HandlerFunc(s.postApprove))
	s.setupUI()
	return nil
}

// meta is the audit stamp of c's change in r.
func meta(r *http.Request, c *caller) audit.Meta {
	return audit.Meta{Actor: c.actor(), RequestID: RequestID(r.Context())}
}

// timeParam parses an RFC 3339 query parameter.
func timeParam(v string) (time.Time, bool) {
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}
