package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// The hand-written canonical encoding must equal encoding/json's, or every
// chain written before the change would stop verifying.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	pieces := []string{"", "a", "plain ascii", `"quoted"`, `back\slash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
		"\b\f\n\r\t", "é ü 中文 🙂", "\u2028\u2029", "\xff\xfe bad utf8 \xc3", "{\"k\":[1,2,{\"x\":null}]}", "\u00a0 nbsp"}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		if rng.IntN(3) == 0 {
			b := make([]byte, rng.IntN(40))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return string(b)
		}
		s := ""
		for n := rng.IntN(4); n >= 0; n-- {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	for i := 0; i < 5000; i++ {
		c := canonical{Seq: rng.Int64N(1 << 40), Time: str(), Actor: str(), Action: str(), ObjectType: str(),
			ObjectID: str(), Before: str(), After: str(), RunID: str(), RequestID: str(), PrevHash: str()}
		if i == 0 {
			c = canonical{}
		}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCanonical(nil, &c); string(got) != string(want) {
			t.Fatalf("case %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

// The split form (CanonicalPrefix SEQ CanonicalMiddle PREVHASH
// CanonicalSuffix), which a store hashes where the chain head is, hashes
// to ComputeHash's value.
func TestCanonicalMiddleSplitsTheCanonicalForm(t *testing.T) {
	e := Event{Seq: 42, Time: time.Date(2026, 12, 2, 1, 2, 3, 456789999, time.FixedZone("x", 3600)), Actor: "scim:entra",
		Action: "user.update", ObjectType: "user", ObjectID: "u<1>", Before: json.RawMessage(`{"a":"\u2028"}`),
		After: json.RawMessage(`{"b":1}`), RunID: "r", RequestID: "q", PrevHash: GenesisHash}
	b := append([]byte(CanonicalPrefix), strconv.FormatInt(e.Seq, 10)...)
	b = append(append(append(b, CanonicalMiddle(e)...), e.PrevHash...), CanonicalSuffix...)
	sum := sha256.Sum256(b)
	if got, want := hex.EncodeToString(sum[:]), ComputeHash(e); got != want {
		t.Fatalf("split form %q hashes to %s, ComputeHash %s", b, got, want)
	}
}
