package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func chain(n int) []Event {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	var out []Event
	prevSeq, prevHash := int64(0), GenesisHash
	for i := 0; i < n; i++ {
		e := Event{Time: t0.Add(time.Duration(i) * time.Second), Actor: "scim:entra", Action: "user.update",
			ObjectType: "user", ObjectID: "u1", Before: json.RawMessage(`{"active":true}`), After: json.RawMessage(`{"active":false}`), RunID: "r1"}
		Seal(&e, prevSeq, prevHash)
		prevSeq, prevHash = e.Seq, e.Hash
		out = append(out, e)
	}
	return out
}

func verify(events []Event) *Verifier {
	v := NewVerifier()
	for _, e := range events {
		v.Add(e)
	}
	return v
}

func TestChainVerifies(t *testing.T) {
	v := verify(chain(5))
	if !v.OK() || v.Checked != 5 {
		t.Fatalf("intact chain: ok=%v checked=%d problems=%v", v.OK(), v.Checked, v.Problems)
	}
}

func TestTamperingDetected(t *testing.T) {
	cases := []struct {
		name   string
		mutate func([]Event) []Event
		want   string
	}{
		{"edited after", func(es []Event) []Event { es[2].After = json.RawMessage(`{"active":true}`); return es }, "edited"},
		{"edited actor", func(es []Event) []Event { es[0].Actor = "admin:mallory"; return es }, "edited"},
		{"edited time", func(es []Event) []Event { es[1].Time = es[1].Time.Add(time.Hour); return es }, "edited"},
		{"deleted middle", func(es []Event) []Event { return append(es[:2], es[3:]...) }, "gap"},
		{"deleted first", func(es []Event) []Event { return es[1:] }, "gap"},
		{"rehashed edit", func(es []Event) []Event {
			// an attacker edits and recomputes the event's own hash: the next event's PrevHash no longer matches
			es[1].ObjectID = "u2"
			es[1].Hash = ComputeHash(es[1])
			return es
		}, "previous-hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := verify(tc.mutate(chain(5)))
			if v.OK() {
				t.Fatal("tampering not detected")
			}
			var all []string
			for _, p := range v.Problems {
				all = append(all, p.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Fatalf("problems %q do not mention %q", all, tc.want)
			}
		})
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := chain(1)[0]
	mut := []func(*Event){
		func(e *Event) { e.Seq++ }, func(e *Event) { e.Action = "x" }, func(e *Event) { e.ObjectType = "x" },
		func(e *Event) { e.Before = nil }, func(e *Event) { e.RunID = "r2" }, func(e *Event) { e.RequestID = "q" },
		func(e *Event) { e.PrevHash = "ff" },
	}
	for i, m := range mut {
		e := base
		m(&e)
		if ComputeHash(e) == base.Hash {
			t.Errorf("mutation %d does not change the hash", i)
		}
	}
}

func TestMarshal(t *testing.T) {
	if Marshal(nil) != nil {
		t.Fatal("nil should stay nil")
	}
	if got := string(Marshal(map[string]int{"a": 1})); got != `{"a":1}` {
		t.Fatalf("got %s", got)
	}
}
