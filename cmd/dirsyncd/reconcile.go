package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/reconcile/ldaptarget"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// The reconcile feature: `dirsyncd reconcile [--dry-run] [--json]`,
// `dirsyncd runs approve RUN --plan-hash H`, job kind "reconcile", and the
// event-driven worker (serve) fed by SCIM, LDAP and CWA through
// App.reconcileQueue.
func init() {
	register(feature{
		Name: "reconcile",
		Commands: func(app *App) []*cobra.Command {
			return []*cobra.Command{newReconcileCmd(app), newRunsCmd(app), newOutboxCmd(app)}
		},
		Jobs: func(app *App) map[string]scheduler.JobFunc {
			return map[string]scheduler.JobFunc{reconcile.JobName: app.reconcileJob}
		},
		Setup: func(ctx context.Context, app *App) error {
			w, err := app.reconcileQueue()
			if err != nil {
				return err
			}
			app.Go("reconcile-worker", w.Run)
			// LDAP, CWA and every other writer reach the worker through the
			// audit log (SCIM also enqueues directly, for latency).
			feed := reconcile.NewFeed(app.Store, w, reconcile.FeedOptions{
				Logger: app.Logger, RequestFull: app.requestFullReconcile,
			})
			app.Go("reconcile-feed", feed.Run)
			if ob, err := app.outbox(); err != nil {
				return err
			} else if ob != nil {
				app.Go("ccms-outbox", func(ctx context.Context) error {
					log := app.Logger.Named("reconcile")
					t := time.NewTicker(app.Config.Reconcile.Outbox.Interval)
					defer t.Stop()
					for {
						if sent, failed, err := ob.Deliver(ctx); err != nil && ctx.Err() == nil {
							log.Error("ccms outbox delivery", zap.Error(err))
						} else if sent+failed > 0 {
							log.Info("ccms outbox delivered", zap.Int("sent", sent), zap.Int("failed", failed))
						}
						select {
						case <-ctx.Done():
							return nil
						case <-t.C:
						}
					}
				})
			}
			return nil
		},
	})
}

var (
	reconcileMu      sync.Mutex
	reconcileWorkers = map[*App]*reconcile.Worker{}
)

// reconcileQueue returns the process's event-driven reconcile queue (made
// on first use; serve runs it). SCIM, LDAP and CWA wiring pass it where they
// take an Enqueue(ctx, userIDs...) consumer.
func (a *App) reconcileQueue() (*reconcile.Worker, error) {
	reconcileMu.Lock()
	defer reconcileMu.Unlock()
	if w, ok := reconcileWorkers[a]; ok {
		return w, nil
	}
	r, err := a.reconciler()
	if err != nil {
		return nil, err
	}
	c := a.Config.Reconcile.Worker
	log := a.Logger.Named("reconcile")
	record := reconcile.QuarantineRecorder(a.Store, c.MaxFailures, a.Logger)
	w := reconcile.NewWorker(r, reconcile.WorkerOptions{
		Concurrency: c.Concurrency, BatchSize: c.BatchSize, MaxFailures: c.MaxFailures,
		BaseBackoff: c.Backoff, MaxBackoff: c.MaxBackoff, Logger: a.Logger,
		OnQuarantine: func(id string, err error) {
			log.Error("user quarantined by the reconcile worker", zap.String("user_id", id), zap.Error(err))
			record(id, err)
		},
	})
	reconcileWorkers[a] = w
	return w, nil
}

// requestFullReconcile starts a full reconcile for the change feed (a big
// sync, or a deleted group): through the scheduler when a job of kind
// reconcile is configured (so the run is recorded like the scheduled ones,
// and a run already in flight makes the feed retry the same changes), else
// directly in the feed's goroutine.
func (a *App) requestFullReconcile(ctx context.Context) error {
	if a.Scheduler != nil {
		for _, j := range a.Config.Scheduler.Jobs {
			if j.Kind == reconcile.JobName {
				_, err := a.Scheduler.Trigger(ctx, j.Name)
				return err
			}
		}
	}
	r, err := a.reconciler()
	if err != nil {
		return err
	}
	rep, err := r.Full(ctx, reconcile.RunOptions{Trigger: "event"})
	if err != nil {
		return err
	}
	if rep.Status == directory.RunHeld {
		return nil
	}
	return a.syncRoleGroups(ctx, rep.RunID, func(string, int64) {})
}

// reconciler builds a Reconciler over the open store.
func (a *App) reconciler() (*reconcile.Reconciler, error) {
	if a.Store == nil {
		return nil, errors.New("reconcile: store not open")
	}
	e, err := a.mappingEngine()
	if err != nil {
		return nil, err
	}
	c := a.Config.Reconcile
	return reconcile.New(a.Store, e, reconcile.Options{
		Outbox:      c.Outbox.Endpoint != "",
		Guard:       reconcile.Guard{MinRevokes: c.MinRevokes, Percent: c.RevokePercent},
		BatchSize:   c.BatchSize,
		LinkSources: c.LinkSources,
		Logger:      a.Logger,
		Now:         a.Now,
	}), nil
}

// roleGroups returns the LDAP role-group target, or nil when it is off.
func (a *App) roleGroups() (*reconcile.RoleGroups, error) {
	t := a.Config.Reconcile.LDAPTarget
	if !t.Enabled {
		return nil, nil
	}
	src, ok := a.Config.LDAP.Source(t.Source)
	if !ok {
		return nil, fmt.Errorf("reconcile.ldapTarget.source: no ldap.sources entry named %q", t.Source)
	}
	if src.StartTLS || src.CAFile != "" || src.ClientCertFile != "" {
		return nil, fmt.Errorf("reconcile.ldapTarget: source %q uses StartTLS or custom certificates, which the role-group target does not support yet (use ldaps:// with system roots or ldap://)", t.Source)
	}
	e, err := a.mappingEngine()
	if err != nil {
		return nil, err
	}
	dir := ldaptarget.New(ldaptarget.Options{URL: src.URL, BindDN: src.BindDN, Password: src.BindPassword.Value()})
	return reconcile.NewRoleGroups(a.Store, e.Catalogue(), dir, reconcile.RoleGroupsOptions{
		Source: "ldap:" + src.Name, Template: t.GroupTemplate, OU: t.OU, Correct: t.Correct, Logger: a.Logger,
	}), nil
}

// syncRoleGroups runs the role-group target after an applied reconcile.
func (a *App) syncRoleGroups(ctx context.Context, runID string, count func(string, int64)) error {
	rg, err := a.roleGroups()
	if err != nil || rg == nil {
		return err
	}
	changes, err := rg.Sync(ctx, runID)
	var drift int64
	for _, c := range changes {
		if c.Drift {
			drift++
		}
	}
	count("rolegroup_changes", int64(len(changes)))
	count("rolegroup_drift", drift)
	return err
}

// reconcileJob is the scheduled full reconcile.
func (a *App) reconcileJob(ctx context.Context, run *scheduler.RunContext) error {
	r, err := a.reconciler()
	if err != nil {
		return err
	}
	rep, err := r.Full(ctx, reconcile.RunOptions{Trigger: run.Trigger, RunID: run.RunID})
	if err == nil && rep.Status != directory.RunHeld {
		err = a.syncRoleGroups(ctx, run.RunID, run.SetCount)
	}
	if rep != nil {
		for act, n := range rep.Plan.Counts() {
			run.SetCount(string(act), int64(n))
		}
		run.SetCount("users", int64(rep.Users))
		run.SetCount("applied", int64(rep.Applied))
		run.SetCount("skipped", int64(rep.Skipped))
		run.SetCount("conflicts", int64(rep.ConflictCount))
		if rep.Status == directory.RunHeld {
			b, _ := json.Marshal(rep.Plan)
			run.SetPlan(rep.PlanHash, b)
			run.Hold(rep.Held)
		}
	}
	return err
}

// outbox returns the CCMS outbox, or nil when no endpoint is configured.
func (a *App) outbox() (*reconcile.Outbox, error) {
	c := a.Config.Reconcile.Outbox
	if c.Endpoint == "" {
		return nil, nil
	}
	e, err := a.mappingEngine()
	if err != nil {
		return nil, err
	}
	return reconcile.NewOutbox(a.Store, e.Catalogue(), reconcile.OutboxOptions{
		Endpoint: c.Endpoint, Token: c.Token.Value(), Client: &http.Client{Timeout: c.Timeout},
		MaxAttempts: c.MaxAttempts, Backoff: c.Backoff, Logger: a.Logger,
	}), nil
}

func newOutboxCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "outbox", Short: "Deliver or resend CCMS change messages"}
	var failedOnly bool
	resend := &cobra.Command{
		Use:   "resend --failed",
		Short: "Send a fresh message (current roles) for every user whose last delivery failed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !failedOnly {
				return usageError{errors.New("outbox resend: only --failed is supported")}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.open(ctx); err != nil {
				return err
			}
			ob, err := app.outbox()
			if err != nil {
				return err
			}
			if ob == nil {
				return usageError{errors.New("outbox resend: reconcile.outbox.endpoint is not configured")}
			}
			sent, failed, err := ob.Resend(ctx)
			fmt.Fprintf(cmd.OutOrStdout(), "resent %d user(s), %d still failing\n", sent, failed)
			if err == nil && failed > 0 {
				err = &exitError{code: exitFailure, err: fmt.Errorf("outbox resend: %d user(s) still failing", failed)}
			}
			return err
		},
	}
	resend.Flags().BoolVar(&failedOnly, "failed", false, "resend users whose last delivery failed")
	cmd.AddCommand(resend)
	return cmd
}

func newReconcileCmd(app *App) *cobra.Command {
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Reconcile every user's grants with the mapping rules now (trigger=manual)",
		Long: `reconcile computes the plan (grant, revoke, update, each with a reason),
applies the guard (a plan revoking more than max(reconcile.minRevokes,
reconcile.revokePercent% of all grants) is held for 'dirsyncd runs approve')
and applies it in audited batches. --dry-run prints the same plan and writes
nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.openFor(ctx, dryRun); err != nil { // a dry run writes nothing, not even migrations
				return err
			}
			r, err := app.reconciler()
			if err != nil {
				return err
			}
			rep, err := r.Full(ctx, reconcile.RunOptions{DryRun: dryRun, Trigger: "manual"})
			if err != nil {
				return err
			}
			if err := printReport(cmd, rep, asJSON, dryRun); err != nil {
				return err
			}
			if dryRun || rep.Status == directory.RunHeld {
				return nil
			}
			return app.syncRoleGroups(ctx, rep.RunID, func(name string, n int64) {
				if n > 0 && !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d\n", name, n)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan, write nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printReport(cmd *cobra.Command, rep *reconcile.Report, asJSON, dryRun bool) error {
	w := cmd.OutOrStdout()
	if asJSON {
		return writeJSONOut(w, rep)
	}
	if err := rep.Plan.WriteText(w); err != nil {
		return err
	}
	if rep.ConflictCount > 0 {
		fmt.Fprintf(w, "%d conflict(s) refused (the earlier rule or the held role wins):\n", rep.ConflictCount)
		for _, c := range rep.Conflicts {
			fmt.Fprintf(w, "  %s firm %s: %s (rule %s) conflicts with %s, given by %s\n", c.UserName, c.Firm, c.Role, c.Rule, c.With, c.WithBy)
		}
	}
	switch {
	case dryRun:
		fmt.Fprintf(w, "dry run: nothing written (plan hash %s)\n", rep.PlanHash)
	case rep.Status == directory.RunHeld:
		fmt.Fprintf(w, "run %s HELD: %s\n", rep.RunID, rep.Held)
	case rep.RunID == "":
		fmt.Fprintln(w, "nothing to change")
	default:
		fmt.Fprintf(w, "run %s %s: %d applied, %d skipped (changed since planned)\n", rep.RunID, rep.Status, rep.Applied, rep.Skipped)
	}
	return nil
}

func newRunsCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "runs", Short: "Review held runs"}
	var hash string
	var asJSON bool
	approve := &cobra.Command{
		Use:   "approve RUN --plan-hash H",
		Short: "Apply exactly the plan of a held reconcile run",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if hash == "" {
				return usageError{errors.New("runs approve: --plan-hash is required")}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.open(ctx); err != nil {
				return err
			}
			r, err := app.reconciler()
			if err != nil {
				return err
			}
			rep, err := r.Approve(ctx, args[0], hash, "support:cli")
			if err != nil {
				return err
			}
			return printReport(cmd, rep, asJSON, false)
		},
	}
	approve.Flags().StringVar(&hash, "plan-hash", "", "the held run's plan hash (as printed when it was held)")
	approve.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(approve)
	return cmd
}
