package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// With -pg-plans (and -store postgres) scimload prints, after the mixed
// phase, how PostgreSQL planned the statements the in-process dirsyncd
// prepared: pg_prepared_statements (PostgreSQL 14+) read on every
// connection of the store's own pool (the view is per session, so each
// connection is held at once while it is read), summed by statement text.
// A hot statement whose custom_plans keep growing is planned anew on every
// execution: that planning is backend CPU per request.

type planStat struct {
	stmt            string
	generic, custom int64
	conns           int
}

// pgPlans reads pg_prepared_statements through conns connections of st's
// pool and returns the statements by executions, most executed first.
func pgPlans(ctx context.Context, st *sqlstore.Store, conns int) ([]planStat, error) {
	txs := make([]sqlstore.TxConn, 0, conns)
	defer func() {
		for _, tx := range txs {
			_ = tx.Rollback(ctx)
		}
	}()
	byStmt := map[string]*planStat{}
	for range conns {
		tx, err := st.DB().Begin(ctx) // holds one pooled connection until the rollback
		if err != nil {
			return nil, fmt.Errorf("prepared statements: acquire: %w", err)
		}
		txs = append(txs, tx)
		rows, err := tx.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement NOT LIKE $1`, "%pg_prepared_statements%")
		if err != nil {
			return nil, fmt.Errorf("prepared statements: %w", err)
		}
		for rows.Next() {
			var s planStat
			if err := rows.Scan(&s.stmt, &s.generic, &s.custom); err != nil {
				rows.Close()
				return nil, fmt.Errorf("prepared statements: %w", err)
			}
			p := byStmt[s.stmt]
			if p == nil {
				p = &planStat{stmt: s.stmt}
				byStmt[s.stmt] = p
			}
			p.generic += s.generic
			p.custom += s.custom
			p.conns++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("prepared statements: %w", err)
		}
	}
	out := make([]planStat, 0, len(byStmt))
	for _, p := range byStmt {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b planStat) int {
		return int((b.generic + b.custom) - (a.generic + a.custom))
	})
	return out, nil
}

// printPlans prints the statements executed at least min times: generic
// and custom plan counts, then the statement text on one line (cut to
// width characters).
func printPlans(w io.Writer, label string, ps []planStat, minExec int64, width int) {
	fmt.Fprintf(w, "%s prepared statements (summed over the pool's connections), executed at least %d times:\n", label, minExec)
	fmt.Fprintf(w, "%10s %10s %5s  %s\n", "generic", "custom", "conns", "statement")
	for _, p := range ps {
		if p.generic+p.custom < minExec {
			continue
		}
		s := strings.Join(strings.Fields(p.stmt), " ")
		if len(s) > width {
			s = s[:width] + "…"
		}
		fmt.Fprintf(w, "%10d %10d %5d  %s\n", p.generic, p.custom, p.conns, s)
	}
}
