package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// jobKindCWA is the job kind of a CWA sync (config.JobKinds).
const jobKindCWA = "cwa"

// The CWA sync feature: `dirsyncd sync cwa [--dry-run]`, the cwa job kind,
// and in `serve` the in-process fake CWA (cwa.fake, development only) and
// the sync at start (cwa.syncAtStart).
func init() {
	register(feature{
		Name:     "cwa",
		Commands: func(app *App) []*cobra.Command { return []*cobra.Command{newSyncCWACmd(app)} },
		Setup:    func(ctx context.Context, app *App) error { return app.setupCWA() },
		Jobs: func(app *App) map[string]scheduler.JobFunc {
			return map[string]scheduler.JobFunc{jobKindCWA: app.cwaJob()}
		},
	})
}

// cwaFakes holds the fake CWA `serve` started, per App.
var cwaFakes sync.Map // *App -> *cwaFake

type cwaFake struct {
	url, key string
}

// setupCWA starts the fake CWA when configured and schedules the sync at
// start.
func (a *App) setupCWA() error {
	c := a.Config.CWA
	log := a.Logger.Named("cwa")
	if c.Fake.Enabled {
		srv, key, err := a.newCWAFake(c.Fake.Listen)
		if err != nil {
			return err
		}
		cwaFakes.Store(a, &cwaFake{url: srv.URL(), key: key})
		a.OnClose(func() error { cwaFakes.Delete(a); return nil })
		a.Go("cwafake", srv.Run)
		log.Info("fake CWA serving the fixture", zap.String("url", srv.URL()), zap.String("fixture", c.Fake.Fixture))
	}
	if !c.SyncAtStart {
		return nil
	}
	job, ok := a.cwaJobName()
	if !ok {
		return errors.New("cwa.syncAtStart: no job of kind cwa in scheduler.jobs")
	}
	a.Go("cwa-sync-at-start", func(ctx context.Context) error {
		id, err := a.Scheduler.Trigger(ctx, job)
		if err != nil {
			log.Warn("sync at start not started", zap.String("job", job), zap.Error(err))
		} else {
			log.Info("sync at start triggered", zap.String("job", job), zap.String("run_id", id))
		}
		<-ctx.Done()
		return nil
	})
	return nil
}

// newCWAFake builds the fake from the configured fixture, listening on
// addr. The fake accepts the configured API key, or a random one.
func (a *App) newCWAFake(addr string) (*cwafake.Server, string, error) {
	c := a.Config.CWA
	if !a.Config.Development() {
		return nil, "", errors.New("cwa.fake is only allowed with env: development")
	}
	fx, err := cwafake.LoadFixture(c.Fake.Fixture)
	if err != nil {
		return nil, "", err
	}
	key := c.APIKey.Value()
	if key == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", fmt.Errorf("cwa: fake API key: %w", err)
		}
		key = hex.EncodeToString(b[:])
	}
	h := cwafake.NewHandler(fx, key)
	h.SetAPIKeyHeader(c.APIKeyHeader)
	srv, err := cwafake.Listen(addr, h)
	if err != nil {
		return nil, "", err
	}
	return srv, key, nil
}

// cwaJobName is the configured job of kind cwa (the first one).
func (a *App) cwaJobName() (string, bool) {
	for _, j := range a.Config.Scheduler.Jobs {
		if j.Kind == jobKindCWA {
			return j.Name, true
		}
	}
	return "", false
}

// cwaClient returns a client for the configured CWA. With cwa.fake and no
// fake running (the CLI), it starts one until stop is called.
func (a *App) cwaClient(ctx context.Context) (api *cwasync.Client, stop func(), err error) {
	c := a.Config.CWA
	if !c.Enabled() {
		return nil, nil, errors.New("cwa: not configured (set cwa.baseURL, or cwa.fake for development)")
	}
	url, key, stop := c.BaseURL, c.APIKey.Value(), func() {}
	if c.Fake.Enabled {
		if f, ok := cwaFakes.Load(a); ok {
			url, key = f.(*cwaFake).url, f.(*cwaFake).key
		} else {
			srv, k, err := a.newCWAFake("127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan struct{})
			go func() { _ = srv.Run(fctx); close(done) }()
			url, key, stop = srv.URL(), k, func() { cancel(); <-done }
		}
	}
	api, err = cwasync.NewClient(cwasync.ClientOptions{
		BaseURL: url, APIKey: key, APIKeyHeader: c.APIKeyHeader, Timeout: c.Timeout,
		MaxAttempts: c.MaxAttempts, Backoff: c.Backoff, MaxBackoff: c.MaxBackoff, MaxRetryAfter: c.MaxRetryAfter,
		MaxBodyBytes: c.MaxBodyBytes, MaxConns: c.Concurrency, Log: a.Logger.Named("cwa"),
	})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return api, stop, nil
}

// cwaSync runs one sync (runID "" for a dry run).
func (a *App) cwaSync(ctx context.Context, runID string, dry bool) (*cwasync.Report, error) {
	c := a.Config.CWA
	ctx, cancel := context.WithTimeout(ctx, c.RunTimeout)
	defer cancel()
	api, stop, err := a.cwaClient(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	minFraction := c.ShrinkGuard()
	if minFraction == 0 { // cwa.minFraction: 0 switches the shrink guard off
		minFraction = cwasync.ShrinkGuardOff
	}
	s := cwasync.New(api, a.Store, cwasync.Options{Concurrency: c.Concurrency, MinFraction: minFraction, Now: a.Now, Log: a.Logger})
	return s.Sync(ctx, runID, dry)
}

// cwaJob is the cwa job kind: one sync recorded as the scheduler's run.
func (a *App) cwaJob() scheduler.JobFunc {
	return func(ctx context.Context, run *scheduler.RunContext) error {
		rep, err := a.cwaSync(ctx, run.RunID, false)
		if rep != nil {
			for k, v := range rep.Counts {
				run.SetCount(k, v)
			}
		}
		return safetyAbort(err)
	}
}

func newSyncCWACmd(app *App) *cobra.Command {
	parent := &cobra.Command{Use: "sync", Short: "Run a source sync now, in this process"}
	var dry bool
	cmd := &cobra.Command{
		Use:   "cwa",
		Short: "Sync firms, offices and legacy logins from CWA",
		Long: `cwa reads the CWA office snapshot, every firm's legacy logins and their
office codes, applies the snapshot rules and writes the differences, recorded
as a run (job kind cwa) with actor cwa in the audit log. A failed or partial
read, or a snapshot smaller than cwa.minFraction of the last good one, aborts
before anything is disabled. --dry-run prints the plan and writes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !app.Config.CWA.Enabled() {
				return usageError{errors.New("sync cwa: CWA is not configured (cwa.baseURL, or cwa.fake for development)")}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.openFor(ctx, dry); err != nil { // a dry run writes nothing, not even migrations
				return err
			}
			if dry {
				rep, err := app.cwaSync(ctx, "", true)
				if err != nil {
					return &exitError{code: exitFailure, err: fmt.Errorf("sync cwa: %w", err)}
				}
				printCWAPlan(cmd, rep)
				return nil
			}
			name, ok := app.cwaJobName()
			if !ok {
				name = jobKindCWA
			}
			s, err := scheduler.New(scheduler.Options{
				Store:  app.Store,
				Jobs:   []scheduler.Job{{Name: name, Kind: jobKindCWA}},
				Funcs:  map[string]scheduler.JobFunc{jobKindCWA: app.cwaJob()},
				Logger: app.Logger.Named("scheduler"),
				Now:    app.Now,
			})
			if err != nil {
				return err
			}
			run, err := s.Execute(ctx, name, scheduler.TriggerManual)
			if err != nil {
				return err
			}
			printRun(cmd, run)
			if run.Status == directory.RunFailed || run.Status == directory.RunAborted {
				return &exitError{code: exitFailure, err: fmt.Errorf("sync cwa: run %s %s", run.ID, run.Status)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the plan of changes; write nothing")
	parent.AddCommand(cmd)
	return parent
}

func printCWAPlan(cmd *cobra.Command, rep *cwasync.Report) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "cwa: dry run (nothing written), %d write(s) planned\n", rep.Writes)
	keys := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %d\n", k, rep.Counts[k])
	}
	fmt.Fprintln(w, "plan:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, it := range rep.Items {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", it.Action, it.ObjectType, it.ObjectID, it.Reason)
	}
	_ = tw.Flush()
}
