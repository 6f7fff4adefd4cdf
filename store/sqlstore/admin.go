package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// SearchUsers is the admin user search (server's /api/v1/users): q.Text
// is a case-insensitive substring of userName, e-mail or display name;
// q.Firms match a user whose primary firm is one of them or who has a firm
// profile (membership) in one of them. Deleted users are left out. Ordered
// by userName, then id.
func (r *reader) SearchUsers(ctx context.Context, q store.UserSearch) (store.Page[directory.User], error) {
	var page store.Page[directory.User]
	w := &where{d: r.s.d}
	conds := []string{"u.deleted_at IS NULL"}
	if q.Text != "" {
		f := store.Or{Left: store.Cmp{Field: "userName", Op: store.OpCo, Value: q.Text},
			Right: store.Or{Left: store.Cmp{Field: "email", Op: store.OpCo, Value: q.Text},
				Right: store.Cmp{Field: "displayName", Op: store.OpCo, Value: q.Text}}}
		s, err := w.filter(f, userColumns, userPaths)
		if err != nil {
			return page, fmt.Errorf("store: search users: %w", err)
		}
		conds = append(conds, s)
	}
	if len(q.Firms) > 0 {
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(q.Firms)), ", ")
		conds = append(conds, "(u.firm_number IN ("+marks+") OR EXISTS (SELECT 1 FROM firm_memberships m WHERE m.user_id = u.id AND m.firm_number IN ("+marks+")))")
		for range 2 {
			for _, f := range q.Firms {
				w.args = append(w.args, f)
			}
		}
	}
	wh := " WHERE " + strings.Join(conds, " AND ")
	if err := r.c.QueryRow(ctx, "SELECT count(*) FROM users u"+wh, w.args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("store: search users: count: %w", err)
	}
	if q.Limit == 0 || page.Total == 0 {
		return page, nil
	}
	args := append(append([]any(nil), w.args...), sqlLimit(q.Limit), max(q.Offset, 0))
	var err error
	page.Items, err = r.queryUsers(ctx, wh+" ORDER BY u.user_name_lc, u.id LIMIT ? OFFSET ?", args...)
	if err != nil {
		return page, fmt.Errorf("store: search users: %w", err)
	}
	return page, nil
}
