package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/scheduler"
	"github.com/dirsyncd/dirsyncd/store"
)

// The audit log belongs to the core: its commands and the audit-verify job
// plug in through the same registry the features use.
func init() {
	register(feature{
		Name:     "audit",
		Commands: func(app *App) []*cobra.Command { return []*cobra.Command{newAuditCmd(app)} },
		Jobs: func(app *App) map[string]scheduler.JobFunc {
			return map[string]scheduler.JobFunc{"audit-verify": app.auditVerifyJob}
		},
	})
}

// auditVerifyJob checks the hash chain; tampering fails the run.
func (a *App) auditVerifyJob(ctx context.Context, run *scheduler.RunContext) error {
	v, err := a.Store.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("audit-verify: %w", err)
	}
	run.SetCount("checked", v.Checked)
	run.SetCount("problems", int64(len(v.Problems)))
	if !v.OK() {
		return fmt.Errorf("audit-verify: the audit chain has %d problem(s), first: %s", len(v.Problems), v.Problems[0])
	}
	return nil
}

func newAuditCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log"}
	cmd.AddCommand(newAuditVerifyCmd(app), newAuditListCmd(app))
	return cmd
}

func newAuditVerifyCmd(app *App) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain (exit 1 listing every problem on tampering)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			st, err := app.open(ctx)
			if err != nil {
				return err
			}
			v, err := st.VerifyAudit(ctx)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				problems := v.Problems
				if problems == nil {
					problems = []audit.Problem{}
				}
				if err := writeJSONOut(w, map[string]any{"ok": v.OK(), "checked": v.Checked, "problems": problems}); err != nil {
					return err
				}
			} else if v.OK() {
				fmt.Fprintf(w, "audit log OK: %d event(s), hash chain intact\n", v.Checked)
			} else {
				fmt.Fprintf(w, "audit log TAMPERED: %d problem(s) in %d event(s):\n", len(v.Problems), v.Checked)
				for _, p := range v.Problems {
					fmt.Fprintf(w, "  - %s\n", p)
				}
			}
			if !v.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("audit verify: %d problem(s)", len(v.Problems))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newAuditListCmd(app *App) *cobra.Command {
	var (
		user, actor, since string
		limit              int
		asJSON             bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List audit events (oldest first)",
		Example: `  dirsyncd audit list --user alice@example.org --since 24h
  dirsyncd audit list --actor scim:entra --since 2026-11-01 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return usageError{errors.New("audit list: --limit must be at least 1")}
			}
			f := store.AuditFilter{Actor: actor, Limit: limit}
			if since != "" {
				t, err := parseSince(since, app.Now())
				if err != nil {
					return usageError{err}
				}
				f.Since = t
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			st, err := app.open(ctx)
			if err != nil {
				return err
			}
			if user != "" {
				id, err := resolveUser(ctx, st, user)
				if err != nil {
					return err
				}
				f.ObjectID = id
			}
			var events []audit.Event
			if err := st.Audit(ctx, f, func(e audit.Event) error { events = append(events, e); return nil }); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if events == nil {
					events = []audit.Event{}
				}
				return writeJSONOut(w, events)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tOBJECT\tRUN\tREQUEST")
			for _, e := range events {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Actor, e.Action,
					e.ObjectType, e.ObjectID, dash(e.RunID), dash(e.RequestID))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(events) == limit {
				fmt.Fprintf(cmd.ErrOrStderr(), "(showing the first %d; raise --limit or narrow --since for more)\n", limit)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "events about this user (id, userName or e-mail)")
	fl.StringVar(&actor, "actor", "", `events by this actor (e.g. "scim:entra", "scheduler")`)
	fl.StringVar(&since, "since", "", "events at or after this time: RFC 3339, a date (2026-11-01) or a duration ago (24h)")
	fl.IntVar(&limit, "limit", 100, "at most this many events")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// parseSince accepts RFC 3339, a date, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("audit list: --since %q is not an RFC 3339 time, a date or a duration", s)
}

// resolveUser turns an id, userName or e-mail into a user id.
func resolveUser(ctx context.Context, st store.Store, s string) (string, error) {
	if u, err := st.GetUser(ctx, s); err == nil {
		return u.ID, nil
	} else if !errors.Is(err, store.ErrNotFound) && !isInvalidID(err) {
		return "", fmt.Errorf("audit list: look up user %q: %w", s, err)
	}
	if u, err := st.GetUserByUserName(ctx, s); err == nil {
		return u.ID, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("audit list: look up user %q: %w", s, err)
	}
	if strings.Contains(s, "@") {
		if u, err := st.GetUserByEmail(ctx, s); err == nil {
			return u.ID, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("audit list: look up user %q: %w", s, err)
		}
	}
	// An unknown user may still have history under that id (deleted rows
	// are kept, so this is rare); search by the string as given.
	return s, nil
}

// isInvalidID reports a backend refusing a non-UUID id (PostgreSQL uuid
// columns); the lookup then falls through to userName.
func isInvalidID(err error) bool {
	return strings.Contains(err.Error(), "uuid") || strings.Contains(err.Error(), "invalid input syntax")
}

func writeJSONOut(w interface{ Write([]byte) (int, error) }, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
