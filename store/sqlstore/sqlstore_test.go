package sqlstore

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/dirsyncd/dirsyncd/store"
)

func TestRebind(t *testing.T) {
	d := &Dialect{Numbered: true}
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"a = ? AND b = ?", "a = $1 AND b = $2"},
		{`x LIKE ? ESCAPE '\' AND y = '?' AND z = ?`, `x LIKE $1 ESCAPE '\' AND y = '?' AND z = $2`},
	}
	for _, tc := range tests {
		if got := d.rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := (&Dialect{}).rebind("a = ?"); got != "a = ?" {
		t.Errorf("unnumbered dialect rebinds: %q", got)
	}
}

func TestEscapeLike(t *testing.T) {
	if got := escapeLike(`50%_off\x`); got != `50\%\_off\\x` {
		t.Fatalf("escapeLike = %q", got)
	}
}

func TestFilterSQLIsParameterised(t *testing.T) {
	w := &where{d: &Dialect{Time: func(t time.Time) any { return t.UnixMicro() }}}
	evil := `x' OR '1'='1`
	f := store.Or{
		Left:  store.Cmp{Field: "userName", Op: store.OpCo, Value: evil},
		Right: store.ValuePath{Attr: "emails", F: store.Cmp{Field: "value", Op: store.OpEq, Value: "A@B"}},
	}
	sql, err := w.filter(f, userColumns, userPaths)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sql, "OR '1'") || strings.Count(sql, "?") != 2 {
		t.Fatalf("sql = %s", sql)
	}
	if w.args[0] != `%x' or '1'='1%` || w.args[1] != "a@b" {
		t.Fatalf("args = %#v (values of case-insensitive fields are lowercased)", w.args)
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := LoadMigrations(fstest.MapFS{
		"0020_b.sql": {Data: []byte("B")},
		"0001_a.sql": {Data: []byte("A")},
	})
	if err != nil || len(ms) != 2 || ms[0].Version != 1 || ms[1].Version != 20 || ms[0].Checksum == ms[1].Checksum {
		t.Fatalf("LoadMigrations = %+v, %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"bad name":  {"1_a.sql": {Data: []byte("A")}},
		"duplicate": {"0001_a.sql": {Data: []byte("A")}, "0001_b.sql": {Data: []byte("B")}},
	} {
		if _, err := LoadMigrations(fsys); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestInvalidFilterIsSentinel(t *testing.T) {
	w := &where{d: &Dialect{}}
	_, err := w.filter(store.Cmp{Field: "nope", Op: store.OpEq, Value: "x"}, userColumns, userPaths)
	if !errors.Is(err, store.ErrInvalidFilter) {
		t.Fatalf("err = %v", err)
	}
}
