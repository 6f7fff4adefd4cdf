package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/dirsyncd/dirsyncd/scim"
)

// The SCIM feature: mounts the SCIM 2.0 server at /scim/v2/. The handler
// authenticates its callers itself (scope scim), so that a 401 is a SCIM
// error body; it feeds the reconcile queue.
func init() {
	register(feature{
		Name: "scim",
		Setup: func(ctx context.Context, app *App) error {
			c := app.Config.SCIM
			if c.Disabled {
				return nil
			}
			q, err := app.reconcileQueue()
			if err != nil {
				return fmt.Errorf("scim: reconcile queue: %w", err)
			}
			base := ""
			if u := strings.TrimRight(app.Config.Server.PublicURL, "/"); u != "" {
				base = u + "/scim/v2"
			}
			h, err := scim.New(app.Store, app.Verifier, scim.Options{
				BaseURL:      base,
				MaxBodyBytes: app.Config.Server.MaxBodyBytes,
				DefaultCount: c.DefaultCount,
				MaxResults:   c.MaxResults,
				Enqueuer:     q,
				Logger:       app.Logger,
				Now:          app.Now,
			})
			if err != nil {
				return err
			}
			app.Server.Handle("/scim/v2/", "", http.StripPrefix("/scim/v2", h))
			return nil
		},
	})
}
