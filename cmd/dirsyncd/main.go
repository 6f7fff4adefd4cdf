package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dirsyncd/dirsyncd/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed (store unreachable, run failed, audit tampered)
	exitConfig  = 2 // the configuration is invalid (every problem printed) or the command line is wrong
)

// exitError carries an exit code for a failure already reported.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the CLI and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	defer app.close()
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ve *config.ValidationError
	var ee *exitError
	switch {
	case errors.As(err, &ve):
		fmt.Fprintf(stderr, "dirsyncd: invalid configuration (%s): %d problem(s)\n", orDefault(ve.File, "config"), len(ve.Problems))
		for _, p := range ve.Problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return exitConfig
	case errors.As(err, &ee):
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "dirsyncd: %v\n", ee.err)
		}
		return ee.code
	case isUsageError(err):
		fmt.Fprintf(stderr, "dirsyncd: %v\n", err)
		return exitConfig
	default:
		fmt.Fprintf(stderr, "dirsyncd: %v\n", err)
		return exitFailure
	}
}

type usageError struct{ error }

func isUsageError(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func newRootCmd(app *App) *cobra.Command {
	var configPath string
	root := &cobra.Command{
		Use:   "dirsyncd",
		Short: "Directory sync and provisioning daemon",
		Long: `dirsyncd syncs users, groups and firms from SCIM, LDAP and CWA, maps them to
service roles and keeps every change in an audited store.

The configuration file is --config, else $DIRSYNCD_CONFIG, else the embedded
development default (configs/dev.yaml: SQLite under ./var/, 127.0.0.1:8080).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Annotations["noConfig"] == "true" {
				return nil
			}
			return app.loadConfig(configPath)
		},
	}
	root.PersistentFlags().StringVarP(&configPath, "config", "c", "", "configuration file (default $"+config.EnvConfig+", else the embedded dev.yaml)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCmd(app),
		newMigrateCmd(app),
		newCheckConfigCmd(app),
		newRunCmd(app),
		newVersionCmd(),
	)
	for _, f := range features {
		if f.Commands != nil {
			for _, c := range f.Commands(app) {
				addOrMerge(root, c)
			}
		}
	}
	markUsageErrors(root)
	return root
}

// markUsageErrors makes a wrong command line exit 2 (usageError): an
// argument a command's Args refuses, and an unknown subcommand. Cobra
// returns these as plain errors (exit 1) and, for a command that only
// groups subcommands ("audit", "sync"), prints its help and succeeds, so
// `dirsyncd audit verfy` exited 0 having verified nothing.
func markUsageErrors(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		}
		c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["noConfig"] = "true" // it only prints its help
	} else if c.Args != nil {
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil && !isUsageError(err) {
				return usageError{err}
			} else if err != nil {
				return err
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// addOrMerge adds c to parent; when parent already has a command of that
// name (several features add a "sync" parent), c's subcommands join it.
func addOrMerge(parent, c *cobra.Command) {
	for _, have := range parent.Commands() {
		if have.Name() == c.Name() && c.HasSubCommands() && have.HasSubCommands() {
			subs := append([]*cobra.Command(nil), c.Commands()...)
			c.RemoveCommand(subs...)
			have.AddCommand(subs...)
			return
		}
	}
	parent.AddCommand(c)
}
