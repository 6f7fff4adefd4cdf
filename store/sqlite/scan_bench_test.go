package sqlite

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store/sqlstore"
)

// BenchmarkScanLinks: reading every link of a source, as a full LDAP
// sync's prefetch does, by ScanLinks (the table in storage order) and by
// ListLinks pages of 5,000 by key (what the prefetch did before), with
// keys in random order against the rows' (AD objectGUIDs; OpenLDAP's
// entryUUIDs from slapadd come nearly in insertion order). Links:
// DIRSYNCD_BENCH_LINKS (default 20,000).
func BenchmarkScanLinks(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("DIRSYNCD_BENCH_LINKS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	s := newStore(b).(*sqlstore.Store)
	if err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	db := s.DB().(*stdDB)
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
		key := fmt.Sprintf("%08x-1111-4222-8333-%012d", uint32(i)*2654435761, i) // a permutation of the rows' order
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, user_name, user_name_lc, version, created_at, updated_at) VALUES (?, ?, ?, 1, 0, 0)`,
			id, "u"+id, "u"+id); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO source_links (source, link_key, user_id, dn, last_seen_at) VALUES ('ldap:bench', ?, ?, ?, 0)`,
			key, id, fmt.Sprintf("uid=user%06d,ou=people,dc=example,dc=org", i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	b.Run("ScanLinks", func(b *testing.B) {
		for range b.N {
			got := 0
			if err := s.ScanLinks(ctx, "ldap:bench", func(directory.SourceLink) error { got++; return nil }); err != nil || got != n {
				b.Fatalf("%d links, %v", got, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/link")
	})
	b.Run("ListLinks-pages-by-key", func(b *testing.B) {
		for range b.N {
			got, after := 0, ""
			for {
				ls, err := s.ListLinks(ctx, "ldap:bench", after, 5000)
				if err != nil {
					b.Fatal(err)
				}
				got += len(ls)
				if len(ls) < 5000 {
					break
				}
				after = ls[len(ls)-1].Key
			}
			if got != n {
				b.Fatalf("%d links", got)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/link")
	})
}
