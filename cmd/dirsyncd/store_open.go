package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/postgres"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

// openStore opens the configured backend. PostgreSQL retries its first
// connection with backoff for c.ConnectTimeout, then fails.
func openStore(ctx context.Context, c config.StoreConfig, log *zap.Logger, now func() time.Time) (store.Store, error) {
	switch c.Driver {
	case "sqlite":
		st, err := sqlite.Open(ctx, c.Path, sqlite.Options{Logger: log, Now: now})
		if err != nil {
			return nil, fmt.Errorf("dirsyncd: open sqlite store %s: %w", c.Path, err)
		}
		return st, nil
	case "postgres":
		st, err := postgres.Open(ctx, c.DSN.Value(), postgres.Options{Logger: log, Now: now,
			ConnectTimeout: c.ConnectTimeout, MaxConns: c.MaxConns})
		if err != nil {
			// The DSN may hold a password: never print it; the backend's
			// error names host and database only.
			return nil, fmt.Errorf("dirsyncd: open postgres store (gave up after store.connectTimeout %s): %w", c.ConnectTimeout, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("dirsyncd: unknown store driver %q", c.Driver)
}
