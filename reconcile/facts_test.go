package reconcile

import (
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

func TestByUser(t *testing.T) {
	users := []directory.User{{ID: "a"}, {ID: "c"}, {ID: "e"}}
	type row struct{ user, v string }
	id := func(r *row) string { return r.user }
	for _, tc := range []struct {
		name string
		rows []row
		want [][]string
	}{
		{"empty", nil, [][]string{nil, nil, nil}},
		{"in order", []row{{"a", "1"}, {"a", "2"}, {"e", "3"}}, [][]string{{"1", "2"}, nil, {"3"}}},
		{"user not in the page left out", []row{{"a", "1"}, {"b", "x"}, {"c", "2"}, {"d", "y"}, {"f", "z"}}, [][]string{{"1"}, {"2"}, nil}},
		{"out of order sorted first", []row{{"e", "3"}, {"a", "1"}, {"c", "2"}, {"a", "4"}}, [][]string{{"1", "4"}, {"2"}, {"3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := byUser(users, tc.rows, id)
			if len(got) != len(users) {
				t.Fatalf("%d slices for %d users", len(got), len(users))
			}
			for i, rs := range got {
				var vs []string
				for _, r := range rs {
					if r.user != users[i].ID {
						t.Errorf("user %s got a row of %s", users[i].ID, r.user)
					}
					vs = append(vs, r.v)
				}
				if len(vs) != len(tc.want[i]) || (len(vs) > 0 && !equalStrings(vs, tc.want[i])) {
					t.Errorf("user %s: %v, want %v", users[i].ID, vs, tc.want[i])
				}
				if cap(rs) != len(rs) {
					t.Errorf("user %s: cap %d > len %d: an append would overwrite the next user's rows", users[i].ID, cap(rs), len(rs))
				}
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
