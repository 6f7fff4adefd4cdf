package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:         "version",
		Short:       "Print the version",
		Args:        cobra.NoArgs,
		Annotations: map[string]string{"noConfig": "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			rev, goVersion := "", ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = s.Value
						if len(rev) > 12 {
							rev = rev[:12]
						}
					}
				}
			}
			out := "dirsyncd " + version
			if rev != "" {
				out += " (" + rev + ")"
			}
			if goVersion != "" {
				out += " " + goVersion
			}
			fmt.Fprintln(cmd.OutOrStdout(), out)
			return nil
		},
	}
}

func newCheckConfigCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration without starting (exit 2 listing every problem)",
		Long: `check-config loads the configuration, resolves its secrets, applies defaults
and validates every section. It exits 0 when the configuration is valid and 2
otherwise, printing every problem. It does not connect to any service.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Loading and validation happened in the root's pre-run; what is
			// left is what only the binary knows: which job kinds it has.
			missing, err := app.unimplementedJobs()
			if err != nil {
				return err
			}
			if len(missing) > 0 {
				return &config.ValidationError{File: app.configName(), Problems: missing}
			}
			c := app.Config
			fmt.Fprintf(cmd.OutOrStdout(), "configuration OK: %s (env %s, store %s, %d token(s), %d job(s))\n",
				app.configName(), c.Env, c.Store.Driver, len(c.Tokens), len(c.Scheduler.Jobs))
			return nil
		},
	}
}

func newMigrateCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply the store's database migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.open(ctx); err != nil { // open migrates under the store's lock
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "migrations applied (%s store)\n", app.Config.Store.Driver)
			return nil
		},
	}
}

func newRunCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run JOB",
		Short: "Run a configured job now, in this process (recorded with trigger=manual)",
		Long: `run executes the named job from scheduler.jobs once, in the foreground, and
records it as a run with trigger=manual. It exits 0 when the run ends ok or
held, 1 when it fails or is aborted (Ctrl-C aborts it). To trigger a job in
the running daemon instead, POST /api/v1/runs {"job":"NAME"}.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("run: name exactly one job")}
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if _, ok := app.Config.Job(name); !ok {
				var names []string
				for _, j := range app.Config.Scheduler.Jobs {
					names = append(names, j.Name)
				}
				return usageError{fmt.Errorf("run: no job %q in %s (jobs: %s)", name, app.configName(), strings.Join(names, ", "))}
			}
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			if _, err := app.open(ctx); err != nil {
				return err
			}
			s, err := app.newScheduler(nil)
			if err != nil {
				return err
			}
			run, err := s.Execute(scheduler.WithRequester(ctx, "cli", ""), name, scheduler.TriggerManual)
			if err != nil {
				return err
			}
			printRun(cmd, run)
			if run.Status == directory.RunFailed || run.Status == directory.RunAborted {
				return &exitError{code: exitFailure, err: fmt.Errorf("run %s of %s %s", run.ID, name, run.Status)}
			}
			return nil
		},
	}
	return cmd
}

func printRun(cmd *cobra.Command, run directory.Run) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "run %s\n  job:     %s\n  trigger: %s\n  status:  %s\n", run.ID, run.Job, run.Trigger, run.Status)
	if run.FinishedAt != nil {
		fmt.Fprintf(w, "  took:    %s\n", run.FinishedAt.Sub(run.StartedAt))
	}
	keys := make([]string, 0, len(run.Counts))
	for k := range run.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %d\n", k, run.Counts[k])
	}
	if run.Error != "" {
		fmt.Fprintf(w, "  error:   %s\n", run.Error)
	}
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}
