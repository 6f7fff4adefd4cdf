package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/scheduler"
	"github.com/dirsyncd/dirsyncd/server"
)

func newServeCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: HTTP API, SCIM, scheduler",
		Long: `serve opens the store (PostgreSQL: retrying for store.connectTimeout),
applies migrations, starts the HTTP server and the scheduler, and runs until
SIGINT or SIGTERM. On shutdown, requests and runs in flight get
server.shutdownTimeout to finish; runs still going then are aborted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			return app.serve(ctx)
		},
	}
}

func (a *App) serve(ctx context.Context) error {
	log := a.Logger.Named("dirsyncd")
	log.Info("starting", zap.String("version", version), zap.String("config", a.configName()),
		zap.String("env", a.Config.Env), zap.String("store", a.Config.Store.Driver))
	if _, err := a.open(ctx); err != nil {
		return err
	}
	devTokens, err := a.prepareDevTokens()
	if err != nil {
		return err
	}
	a.Verifier, err = auth.NewVerifier(a.Config.Tokens)
	if err != nil {
		return err
	}
	a.Metrics = server.NewMetrics()
	sched, err := a.newScheduler(a.Metrics)
	if err != nil {
		return err
	}
	if err := a.startDevIssuer(); err != nil { // oidc.devIssuer (devsignin.go)
		return err
	}
	adminOpts, err := a.adminOptions() // admin API, pages, OIDC sign-in (admin.go)
	if err != nil {
		return err
	}
	a.Server, err = server.New(server.Options{
		Admin:    adminOpts,
		Config:   a.Config.Server,
		Store:    a.Store,
		Verifier: a.Verifier,
		Trigger:  triggerAdapter{sched},
		Metrics:  a.Metrics,
		Logger:   log.Named("server"),
		Now:      a.Now,
		Ready: func(addr net.Addr) {
			if len(devTokens) > 0 {
				printDevBanner(a.Stdout, addr, devTokens)
			}
			if testServeReady != nil {
				testServeReady(addr)
			}
		},
	})
	if err != nil {
		return err
	}
	for _, f := range features {
		if f.Setup == nil {
			continue
		}
		if err := f.Setup(ctx, a); err != nil {
			return fmt.Errorf("dirsyncd: set up %s: %w", f.Name, err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.Server.Run(gctx) })
	g.Go(func() error { return sched.Run(gctx) })
	for _, c := range a.components {
		g.Go(func() error {
			if err := c.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	err = g.Wait()
	if err != nil {
		log.Error("stopped with an error", zap.Error(err))
		return err
	}
	log.Info("stopped")
	return nil
}

// testServeReady, set by tests, learns the listening address.
var testServeReady func(net.Addr)

// devToken is a development token to show the user.
type devToken struct {
	name, value, source string
	generated           bool
	scopes              []string
}

// prepareDevTokens generates values for development tokens whose
// environment variable is unset. Configuration validation allows dev
// tokens only with env: development.
func (a *App) prepareDevTokens() ([]devToken, error) {
	var out []devToken
	for i := range a.Config.Tokens {
		t := &a.Config.Tokens[i]
		if !t.Dev || !a.Config.Development() {
			continue
		}
		d := devToken{name: t.Name, source: t.Token.Source(), scopes: t.Scopes}
		if t.NeedsGeneratedToken() {
			var b [24]byte
			if _, err := rand.Read(b[:]); err != nil {
				return nil, fmt.Errorf("dirsyncd: generate development token: %w", err)
			}
			t.Token = config.NewSecret("dev-" + hex.EncodeToString(b[:]))
			d.generated = true
		}
		d.value = t.Token.Value()
		out = append(out, d)
	}
	return out, nil
}

// printDevBanner shows the development token once, on stdout (never
// through the logger).
func printDevBanner(w io.Writer, addr net.Addr, tokens []devToken) {
	var b strings.Builder
	b.WriteString("\n=== dirsyncd development mode ===\n")
	for _, t := range tokens {
		how := "from " + t.source
		if t.generated {
			how = "generated at random; set " + strings.TrimPrefix(t.source, "env:") + " to choose it"
		}
		fmt.Fprintf(&b, "token %q (%s), scopes %s:\n\n    %s\n\n", t.name, how, strings.Join(t.scopes, ", "), t.value)
		fmt.Fprintf(&b, "try:  curl -H 'Authorization: Bearer %s' http://%s/api/v1/runs\n", t.value, addr)
	}
	b.WriteString("=================================\n\n")
	_, _ = io.WriteString(w, b.String())
}

// triggerAdapter maps the scheduler's errors onto the server's.
type triggerAdapter struct{ s *scheduler.Scheduler }

func (t triggerAdapter) Trigger(ctx context.Context, job string) (string, error) {
	by := "admin:unknown"
	if p, ok := auth.PrincipalFrom(ctx); ok {
		by = p.Actor()
	}
	id, err := t.s.Trigger(scheduler.WithRequester(ctx, by, server.RequestID(ctx)), job)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, scheduler.ErrUnknownJob):
		return "", fmt.Errorf("%w: %w", server.ErrUnknownJob, err)
	case errors.Is(err, scheduler.ErrBusy):
		return "", fmt.Errorf("%w: %w", server.ErrBusy, err)
	case errors.Is(err, scheduler.ErrStopped):
		return "", fmt.Errorf("%w: %w", server.ErrUnavailable, err)
	}
	return "", err
}
