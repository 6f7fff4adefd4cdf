package sqlstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
)

// TestChainSQLHashMatchesAudit: the hash flushChainInSQL has the database
// compute, SHA-256 of chainPrefix SEQ chainMid PREVHASH chainSuffix, is
// audit.ComputeHash of the sealed event, for fields that JSON escapes
// (quotes, backslashes, control characters, <, >, &, U+2028/9, invalid
// UTF-8), empty and absent documents, and times with and without
// sub-microsecond parts.
func TestChainSQLHashMatchesAudit(t *testing.T) {
	at := time.Date(2026, 12, 2, 0, 30, 1, 123456789, time.FixedZone("x", 3600))
	cases := []struct {
		name string
		e    audit.Event
		seq  int64
		prev string
	}{
		{"plain", audit.Event{Time: at, Actor: "scim:entra", Action: "user.update", ObjectType: "user", ObjectID: "u1",
			Before: json.RawMessage(`{"a":1}`), After: json.RawMessage(`{"a":2}`), RequestID: "r1"}, 1, audit.GenesisHash},
		{"escapes", audit.Event{Time: at.Truncate(time.Second), Actor: "a\"b\\c\n\t\x01\x1f", Action: "<script>&amp;",
			ObjectType: "group", ObjectID: "\u2028\u2029 é 😀", RunID: "run\xff\xfe", RequestID: "\x7f"}, 123456789, "ab" + audit.GenesisHash[2:]},
		{"documents with HTML", audit.Event{Time: at, Actor: "x", Action: "y", ObjectType: "z", ObjectID: "w",
			After: json.RawMessage(`{"html":"<b>&</b>"}`)}, 42, audit.GenesisHash},
	}
	for _, c := range cases {
		e := c.e
		e.Time = e.Time.UTC().Truncate(time.Microsecond) // what flushChainInSQL does before chainMid
		mid := chainMid(&e)
		b := append([]byte(chainPrefix), strconv.FormatInt(c.seq, 10)...)
		b = append(append(append(b, mid...), c.prev...), chainSuffix...)
		sum := sha256.Sum256(b)
		got := hex.EncodeToString(sum[:])
		want := c.e
		audit.Seal(&want, c.seq-1, c.prev)
		if got != want.Hash {
			t.Errorf("%s: SQL-side hash %s, audit's %s (canonical %q)", c.name, got, want.Hash, b)
		}
	}
}
