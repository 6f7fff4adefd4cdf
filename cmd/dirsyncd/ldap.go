package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/ldapsync"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// The LDAP sync feature: `dirsyncd sync ldap` and the ldap-full /
// ldap-incremental job kinds (params: source: <name>).
func init() {
	register(feature{
		Name:     "ldap",
		Commands: func(app *App) []*cobra.Command { return []*cobra.Command{newSyncLDAPCmd(app)} },
		Jobs: func(app *App) map[string]scheduler.JobFunc {
			return map[string]scheduler.JobFunc{
				ldapsync.JobFull:        app.ldapJob(true),
				ldapsync.JobIncremental: app.ldapJob(false),
			}
		},
	})
}

// ldapSources picks the configured sources by name ("" = all).
func (a *App) ldapSources(name string) ([]config.LDAPSource, error) {
	all := a.Config.LDAP.Sources
	if len(all) == 0 {
		return nil, errors.New("ldap: no sources configured (ldap.sources)")
	}
	if name == "" {
		return all, nil
	}
	if s, ok := a.Config.LDAP.Source(name); ok {
		return []config.LDAPSource{s}, nil
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("ldap: no source %q (sources: %s)", name, strings.Join(names, ", "))
}

// ldapJob runs one source's sync as a scheduled job; params.source names
// the source (optional when only one is configured).
func (a *App) ldapJob(full bool) scheduler.JobFunc {
	return func(ctx context.Context, run *scheduler.RunContext) error {
		name := run.Params["source"]
		srcs, err := a.ldapSources(name)
		if err != nil {
			return err
		}
		if len(srcs) != 1 {
			return errors.New("ldap: several sources are configured: set params.source on the job")
		}
		s := ldapsync.New(srcs[0], a.Store, ldapsync.Options{Log: a.Logger, Now: a.Now})
		res, err := s.Run(ctx, ldapsync.RunOptions{Full: full, Trigger: run.Trigger, RunID: run.RunID})
		if res != nil {
			for k, v := range res.Counts {
				run.SetCount(k, v)
			}
			if res.Mode == ldapsync.ModeFull && !full {
				run.SetCount("forced_full", 1)
				run.Log.Info("incremental ran as full: " + res.Reason)
			}
		}
		return safetyAbort(err)
	}
}

func newSyncLDAPCmd(app *App) *cobra.Command {
	sync := &cobra.Command{Use: "sync", Short: "Run a source sync now, in this process"}
	var (
		source      string
		full, dryRn bool
	)
	cmd := &cobra.Command{
		Use:   "ldap",
		Short: "Sync users, groups and memberships from the configured LDAP sources",
		Long: `ldap syncs every configured LDAP source (or --source NAME): incremental when
a previous run left a cursor, else (or with --full) a full sync. A full sync
that reads fewer entries than ldap.sources[].minFullFraction of the last one,
or fails part-way, aborts before anything is marked gone. --dry-run prints the
plan of changes and writes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			srcs, err := app.ldapSources(source)
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			st, err := app.openFor(ctx, dryRn) // a dry run writes nothing, not even migrations
			if err != nil {
				return err
			}
			var failed []string
			for _, src := range srcs {
				s := ldapsync.New(src, st, ldapsync.Options{Log: app.Logger, Now: app.Now})
				res, err := s.Run(ctx, ldapsync.RunOptions{Full: full, DryRun: dryRn, Trigger: "manual"})
				if res != nil {
					printLDAPResult(cmd, src.Name, res, dryRn)
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "ldap %s: %v\n", src.Name, err)
					failed = append(failed, src.Name)
				}
			}
			if len(failed) > 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("ldap sync failed for %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "sync only this source (ldap.sources[].name)")
	cmd.Flags().BoolVar(&full, "full", false, "full sync even when a cursor allows an incremental one")
	cmd.Flags().BoolVar(&dryRn, "dry-run", false, "print the plan of changes; write nothing")
	sync.AddCommand(cmd)
	return sync
}

func printLDAPResult(cmd *cobra.Command, name string, res *ldapsync.Result, dry bool) {
	w := cmd.OutOrStdout()
	head := "run " + res.RunID
	if dry {
		head = "dry run (nothing written)"
	}
	fmt.Fprintf(w, "ldap %s: %s\n  mode:    %s\n  status:  %s\n", name, head, res.Mode, res.Status)
	if res.Reason != "" {
		fmt.Fprintf(w, "  reason:  %s\n", res.Reason)
	}
	keys := make([]string, 0, len(res.Counts))
	for k := range res.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %d\n", k, res.Counts[k])
	}
	if !dry {
		return
	}
	fmt.Fprintln(w, "plan:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, it := range res.Items {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", it.Action, it.ObjectType, it.Reason)
	}
	_ = tw.Flush()
	if res.Status != directory.RunOK {
		fmt.Fprintln(w, "  (the run would stop here: nothing would be marked gone)")
	}
}
