package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/configs"
	"github.com/dirsyncd/dirsyncd/scheduler"
	"github.com/dirsyncd/dirsyncd/server"
	"github.com/dirsyncd/dirsyncd/store"
)

// App is what every command and feature sees: the loaded configuration,
// the logger, and (once opened) the store; during `serve` also the HTTP
// server (mount handlers with App.Server.Handle), the scheduler and the
// metrics registry.
type App struct {
	Config    *config.Config
	Logger    *zap.Logger // root logger; use Logger.Named("yourpkg")
	Store     store.Store // nil until open
	Server    *server.Server
	Scheduler *scheduler.Scheduler
	Metrics   *server.Metrics
	Verifier  *auth.Verifier
	Now       func() time.Time
	Stdout    io.Writer
	Stderr    io.Writer

	configPath string // "" = embedded configs/dev.yaml
	components []component
	closers    []func() error
}

type component struct {
	name string
	run  func(ctx context.Context) error
}

// feature is how a feature plugs into the binary without the core
// importing it: a file cmd/dirsyncd/<feature>.go calls register from init.
// Every field is optional.
type feature struct {
	Name string
	// Commands adds CLI commands. The App's Config, Logger and Store are
	// not set yet when this runs: use them inside RunE (App.open gives the
	// store).
	Commands func(app *App) []*cobra.Command
	// Setup runs in `serve` after the store is open and migrated and before
	// the listener starts: mount handlers (app.Server.Handle), register
	// metrics (app.Metrics.Registry), add components (app.Go).
	Setup func(ctx context.Context, app *App) error
	// Jobs returns the feature's job implementations by job kind
	// (config.JobKinds). The store is open when a job runs: use app.Store.
	Jobs func(app *App) map[string]scheduler.JobFunc
}

var features []feature

// register adds a feature; call it from an init function.
func register(f feature) {
	if f.Name == "" || slices.ContainsFunc(features, func(g feature) bool { return g.Name == f.Name }) {
		panic(fmt.Sprintf("dirsyncd: feature %q registered twice or without a name", f.Name))
	}
	features = append(features, f)
	sort.Slice(features, func(i, j int) bool { return features[i].Name < features[j].Name })
}

func newApp(stdout, stderr io.Writer) *App {
	return &App{Now: time.Now, Stdout: stdout, Stderr: stderr}
}

// Go adds a long-running component to `serve`: run blocks until ctx ends
// and returns nil, or returns an error that stops the daemon.
func (a *App) Go(name string, run func(ctx context.Context) error) {
	a.components = append(a.components, component{name: name, run: run})
}

// OnClose registers cleanup run when the command ends (last first).
func (a *App) OnClose(fn func() error) { a.closers = append(a.closers, fn) }

// loadConfig reads the configuration file (flag, then DIRSYNCD_CONFIG, then
// the embedded dev.yaml) and builds the logger.
func (a *App) loadConfig(flagPath string) error {
	path := flagPath
	if path == "" {
		path = os.Getenv(config.EnvConfig)
	}
	var (
		c   *config.Config
		err error
	)
	if path == "" {
		c, err = config.Parse(configs.DevYAML)
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			ve.File = "embedded configs/dev.yaml"
		}
	} else {
		c, err = config.Load(path)
	}
	if err != nil {
		var ve *config.ValidationError
		if !errors.As(err, &ve) {
			err = &exitError{code: exitConfig, err: err} // unreadable file: a configuration error too
		}
		return err
	}
	a.Config, a.configPath = c, path
	a.Logger, err = buildLogger(c, a.Stderr)
	return err
}

// configName says which configuration is in use.
func (a *App) configName() string {
	if a.configPath == "" {
		return "embedded configs/dev.yaml"
	}
	return a.configPath
}

// buildLogger makes the one root logger: console in development, JSON in
// production, on w (stderr).
func buildLogger(c *config.Config, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Log.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var enc zapcore.Encoder
	opts := []zap.Option{zap.ErrorOutput(zapcore.AddSync(w))}
	if c.Development() {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
		opts = append(opts, zap.Development(), zap.AddCaller())
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		ec.TimeKey = "time"
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level), opts...), nil
}

// open opens the configured store once (PostgreSQL: retrying the first
// connection for store.connectTimeout) and applies migrations. Commands
// call it lazily, so `version` and `check-config` never touch a database.
func (a *App) open(ctx context.Context) (store.Store, error) { return a.openFor(ctx, false) }

// migrationChecker is what a dry run needs of a store besides store.Store:
// the migrations the database lacks, read without writing (sqlstore.Store
// has it).
type migrationChecker interface {
	PendingMigrations(ctx context.Context) ([]string, error)
}

// openFor is open; with dryRun (dry runs write nothing, not even
// migrations) it never migrates and refuses a store that is not fully
// migrated, and never creates the SQLite file or its directory.
func (a *App) openFor(ctx context.Context, dryRun bool) (store.Store, error) {
	if a.Store != nil {
		return a.Store, nil
	}
	if a.Config == nil {
		return nil, errors.New("dirsyncd: configuration not loaded")
	}
	c := a.Config.Store
	if c.Driver == "sqlite" {
		switch {
		case dryRun && c.Path != ":memory:":
			if _, err := os.Stat(c.Path); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("dirsyncd: sqlite store %s does not exist: run `dirsyncd migrate` first (a dry run writes nothing, not even the database)", c.Path)
			} else if err != nil {
				return nil, fmt.Errorf("dirsyncd: sqlite store: %w", err)
			}
		case !dryRun:
			if dir := filepath.Dir(c.Path); dir != "" {
				if err := os.MkdirAll(dir, 0o750); err != nil {
					return nil, fmt.Errorf("dirsyncd: create store directory: %w", err)
				}
			}
		}
	}
	st, err := openStore(ctx, c, a.Logger, a.Now) // the store names its logger "store"
	if err != nil {
		return nil, err
	}
	if err := migrateOrCheck(ctx, st, c.Driver, dryRun); err != nil {
		_ = st.Close()
		return nil, err
	}
	a.Store = st
	a.OnClose(st.Close)
	return st, nil
}

// migrateOrCheck applies the pending migrations, or with dryRun refuses a
// store that has any.
func migrateOrCheck(ctx context.Context, st store.Store, driver string, dryRun bool) error {
	if !dryRun {
		if err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("dirsyncd: migrate %s store: %w", driver, err)
		}
		return nil
	}
	mc, ok := st.(migrationChecker)
	if !ok {
		return fmt.Errorf("dirsyncd: the %s store cannot report pending migrations", driver)
	}
	pending, err := mc.PendingMigrations(ctx)
	if err != nil {
		return fmt.Errorf("dirsyncd: check %s store migrations: %w", driver, err)
	}
	if len(pending) > 0 {
		return fmt.Errorf("dirsyncd: the %s store lacks %d migration(s) (%s): run `dirsyncd migrate` first (a dry run writes nothing, not even migrations)",
			driver, len(pending), strings.Join(pending, ", "))
	}
	return nil
}

// close runs the cleanups.
func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil && a.Logger != nil {
			a.Logger.Warn("close", zap.Error(err))
		}
	}
	a.closers = nil
	if a.Logger != nil {
		_ = a.Logger.Sync()
	}
}

// jobFuncs collects every feature's job implementations by kind.
func (a *App) jobFuncs() (map[string]scheduler.JobFunc, error) {
	funcs := map[string]scheduler.JobFunc{}
	owner := map[string]string{}
	for _, f := range features {
		if f.Jobs == nil {
			continue
		}
		for kind, fn := range f.Jobs(a) {
			if prev, dup := owner[kind]; dup {
				return nil, fmt.Errorf("dirsyncd: job kind %q implemented by both %s and %s", kind, prev, f.Name)
			}
			funcs[kind], owner[kind] = fn, f.Name
		}
	}
	return funcs, nil
}

// newScheduler builds the scheduler over the open store.
func (a *App) newScheduler(metrics scheduler.Metrics) (*scheduler.Scheduler, error) {
	funcs, err := a.jobFuncs()
	if err != nil {
		return nil, err
	}
	var jobs []scheduler.Job
	for _, j := range a.Config.Scheduler.Jobs {
		jobs = append(jobs, scheduler.Job{Name: j.Name, Kind: j.Kind, Schedule: j.Schedule, Params: j.Params})
	}
	s, err := scheduler.New(scheduler.Options{
		Store:           a.Store,
		Jobs:            jobs,
		Funcs:           funcs,
		Logger:          a.Logger.Named("scheduler"),
		Metrics:         metrics,
		LeaseTTL:        a.Config.Scheduler.LeaseTTL,
		ShutdownTimeout: a.Config.Server.ShutdownTimeout,
		Now:             a.Now,
	})
	if err != nil {
		return nil, err
	}
	a.Scheduler = s
	return s, nil
}

// unimplementedJobs lists configured jobs whose kind no compiled-in
// feature implements (check-config reports them).
func (a *App) unimplementedJobs() ([]string, error) {
	funcs, err := a.jobFuncs()
	if err != nil {
		return nil, err
	}
	var out []string
	for i, j := range a.Config.Scheduler.Jobs {
		if funcs[j.Kind] == nil {
			out = append(out, fmt.Sprintf("scheduler.jobs[%d].kind: %q is not implemented in this build of dirsyncd", i, j.Kind))
		}
	}
	return out, nil
}
