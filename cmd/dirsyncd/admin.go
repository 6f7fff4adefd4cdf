package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/server"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/webauth"
)

// adminOptions builds the admin API and pages (server.AdminOptions): the
// store, the catalogue and status from the mapping engine, explain, the
// reconciler's approve, and OIDC when oidc.issuer is set. The sign-in
// callback is server.publicURL + "/ui/callback" (register it with the
// identity provider).
func (a *App) adminOptions() (*server.AdminOptions, error) {
	e, err := a.mappingEngine()
	if err != nil {
		return nil, fmt.Errorf("dirsyncd: admin API: %w", err)
	}
	r, err := a.reconciler()
	if err != nil {
		return nil, fmt.Errorf("dirsyncd: admin API: %w", err)
	}
	o := &server.AdminOptions{
		Store:      a.Store,
		Catalogue:  e.Catalogue(),
		Status:     e.StatusOf,
		Explainer:  explainer{st: a.Store, e: e},
		Approver:   approver{st: a.Store, r: r},
		OIDCConfig: a.Config.OIDC,
	}
	if a.Config.OIDC.Enabled() {
		base := strings.TrimRight(a.Config.Server.PublicURL, "/")
		if base == "" {
			base = "http://" + a.Config.Server.Listen
		}
		o.OIDC = webauth.New(a.Config.OIDC, base+"/ui/callback", nil)
	}
	return o, nil
}

// explainer is server.Explainer over reconcile.LoadFacts and the engine.
type explainer struct {
	st store.Store
	e  *mapping.Engine
}

func (x explainer) Explain(ctx context.Context, userID string) (mapping.Explanation, error) {
	f, err := reconcile.LoadFacts(ctx, x.st, userID)
	if err != nil {
		return mapping.Explanation{}, err
	}
	return x.e.Explain(f), nil
}

// approver is server.Approver over reconcile.Reconciler.Approve (the same
// code as `dirsyncd runs approve`), mapping its errors onto the server's.
type approver struct {
	st store.Store
	r  *reconcile.Reconciler
}

func (a approver) Approve(ctx context.Context, runID, hash, actor string) error {
	run, err := a.st.GetRun(ctx, runID)
	if err != nil {
		return err
	}
	if run.Status != directory.RunHeld {
		return fmt.Errorf("approve run %s: %w", runID, server.ErrNotHeld)
	}
	_, err = a.r.Approve(ctx, runID, hash, actor)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, reconcile.ErrPlanMismatch):
		return fmt.Errorf("%w: %w", server.ErrPlanMismatch, err)
	case errors.Is(err, reconcile.ErrNotHeld): // approved meanwhile by someone else
		return fmt.Errorf("%w: %w", server.ErrNotHeld, err)
	case errors.Is(err, reconcile.ErrPlanStale):
		return fmt.Errorf("%w: %w", server.ErrPlanStale, err)
	}
	return err
}
