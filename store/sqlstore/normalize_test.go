package sqlstore

import (
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/directory"
)

// TestNormalizeUsersNamesTheFirstBadUser: bulk writes normalize in two
// halves at once; the error must still name the first bad user in input
// order, and every user must be normalized.
func TestNormalizeUsersNamesTheFirstBadUser(t *testing.T) {
	for _, n := range []int{10, parallelMin, 1000} {
		us := make([]*directory.User, n)
		for i := range us {
			us[i] = &directory.User{UserName: fmt.Sprint("u", i), Email: fmt.Sprint("u", i, "@x.example"), Attrs: []byte(`{"b":1, "a":2}`)}
		}
		if _, err := normalizeUsers(us); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i, u := range us {
			if string(u.Attrs) != `{"a":2,"b":1}` || len(u.Emails) != 1 {
				t.Fatalf("n=%d: user %d not normalized: %s %v", n, i, u.Attrs, u.Emails)
			}
		}
		bad := []int{n * 7 / 10, n * 9 / 10, n - 1}
		for _, b := range bad {
			us[b].Attrs = []byte(`{not json`)
		}
		i, err := normalizeUsers(us)
		if err == nil || i != bad[0] {
			t.Fatalf("n=%d: got index %d err %v, want index %d", n, i, err, bad[0])
		}
	}
}
