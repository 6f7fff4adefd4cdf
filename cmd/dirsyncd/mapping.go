package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/store"
)

// The mapping feature: `dirsyncd rules check`, `dirsyncd rules test FILE`,
// `dirsyncd explain USER` and GET /api/v1/users/{id}/explain.
func init() {
	register(feature{
		Name: "mapping",
		Commands: func(app *App) []*cobra.Command {
			return []*cobra.Command{newRulesCmd(app), newExplainCmd(app)}
		},
		Setup: func(ctx context.Context, app *App) error {
			e, err := app.mappingEngine()
			if err != nil {
				return err
			}
			app.Server.Handle("GET /api/v1/users/{id}/explain", auth.ScopeAdminRead, explainHandler(app.Store, e))
			return nil
		},
	})
}

// mappingEngine loads the catalogue and rules the configuration names.
func (a *App) mappingEngine() (*mapping.Engine, error) {
	cat, err := mapping.LoadCatalogue(a.Config.Mapping.Catalogue)
	if err != nil {
		return nil, err
	}
	rs, err := mapping.LoadRules(a.Config.Mapping.Rules, cat)
	if err != nil {
		return nil, err
	}
	return mapping.NewEngine(cat, rs), nil
}

func newRulesCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Validate and try the role catalogue and mapping rules"}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the catalogue and the rules against it (exit 2 listing every problem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := app.mappingEngine()
			if err != nil {
				var pe *mapping.ProblemsError
				if errors.As(err, &pe) {
					fmt.Fprintln(cmd.OutOrStdout(), err)
					return &exitError{code: exitConfig, err: errors.New("rules check: invalid")}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rules OK: %d service(s), %d role(s) in %s; %d rule(s) in %s\n",
				len(e.Catalogue().Services), len(e.Catalogue().Roles()), app.Config.Mapping.Catalogue,
				len(e.Rules().Rules), app.Config.Mapping.Rules)
			return nil
		},
	}
	test := &cobra.Command{
		Use:     "test FILE",
		Short:   "Run the rules over a fixture of firms and users and print the grants",
		Example: "  dirsyncd rules test mapping/testdata/fixture.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := app.mappingEngine()
			if err != nil {
				return err
			}
			fx, err := mapping.LoadFixture(args[0])
			if err != nil {
				return usageError{err}
			}
			return e.RunFixture(fx, cmd.OutOrStdout())
		},
	}
	cmd.AddCommand(check, test)
	return cmd
}

func newExplainCmd(app *App) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain USER",
		Short: "Explain why a user has each role, and why not the others (USER: id, userName or e-mail)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			e, err := app.mappingEngine()
			if err != nil {
				return err
			}
			st, err := app.open(ctx)
			if err != nil {
				return err
			}
			id, err := resolveUser(ctx, st, args[0])
			if err != nil {
				return err
			}
			f, err := reconcile.LoadFacts(ctx, st, id)
			if err != nil {
				return err
			}
			x := e.Explain(f)
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), x)
			}
			return x.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func explainHandler(st store.Store, e *mapping.Engine) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := reconcile.LoadFacts(r.Context(), st, r.PathValue("id"))
		switch {
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, "user not found", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "explain failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSONOut(w, e.Explain(f))
	})
}
