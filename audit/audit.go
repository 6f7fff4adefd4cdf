package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Actor kinds used as prefixes; the actor string is free-form but these are
// the ones dirsyncd writes: a SCIM client's name ("scim:<client>"), an admin
// ("admin:<user>"), "ldap:<source>", "cwa", "reconcile", "scheduler".
const (
	ActorReconcile = "reconcile"
	ActorScheduler = "scheduler"
	ActorCWA       = "cwa"
)

// Meta is who and why a change is made; the store stamps it on every event
// written inside one transaction.
type Meta struct {
	Actor     string
	RunID     string
	RequestID string
}

// Event is one audited change.
type Event struct {
	Seq        int64           `json:"seq"`
	Time       time.Time       `json:"time"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`     // e.g. user.create, grant.revoke
	ObjectType string          `json:"objectType"` // user, group, firm, office, grant, run, ...
	ObjectID   string          `json:"objectId"`
	Before     json.RawMessage `json:"before,omitempty"`
	After      json.RawMessage `json:"after,omitempty"`
	RunID      string          `json:"runId,omitempty"`
	RequestID  string          `json:"requestId,omitempty"`
	PrevHash   string          `json:"prevHash"`
	Hash       string          `json:"hash"`
}

// GenesisHash is the PrevHash of the first event.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// canonical is the hashed form: every field but Hash, times in UTC with
// nanoseconds, JSON documents compacted.
type canonical struct {
	Seq        int64  `json:"seq"`
	Time       string `json:"time"`
	Actor      string `json:"actor"`
	Action     string `json:"action"`
	ObjectType string `json:"objectType"`
	ObjectID   string `json:"objectId"`
	Before     string `json:"before"`
	After      string `json:"after"`
	RunID      string `json:"runId"`
	RequestID  string `json:"requestId"`
	PrevHash   string `json:"prevHash"`
}

// ComputeHash returns the hex SHA-256 of the event's canonical form
// (which includes PrevHash). Time is truncated to microseconds, the
// precision both stores keep.
func ComputeHash(e Event) string {
	c := canonical{
		Seq: e.Seq, Time: e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano),
		Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType, ObjectID: e.ObjectID,
		Before: string(e.Before), After: string(e.After), RunID: e.RunID, RequestID: e.RequestID,
		PrevHash: e.PrevHash,
	}
	var buf [1024]byte
	sum := sha256.Sum256(appendCanonical(buf[:0], &c))
	return hex.EncodeToString(sum[:])
}

// Canonical form around what a store may know only while sealing: the
// canonical form (ComputeHash) is CanonicalPrefix SEQ CanonicalMiddle(e)
// PREVHASH CanonicalSuffix, SEQ in decimal. A store that seals events
// where the chain head is (in SQL) hashes those five parts.
const (
	CanonicalPrefix = `{"seq":`
	CanonicalSuffix = `"}`
)

// CanonicalMiddle returns the part of e's canonical form between its
// sequence number and its previous hash (ending in `,"prevHash":"`); e.Seq
// and e.PrevHash are not read.
func CanonicalMiddle(e Event) []byte {
	c := canonical{
		Time:  e.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano),
		Actor: e.Actor, Action: e.Action, ObjectType: e.ObjectType, ObjectID: e.ObjectID,
		Before: string(e.Before), After: string(e.After), RunID: e.RunID, RequestID: e.RequestID,
	}
	b := appendCanonical(nil, &c) // {"seq":0 MIDDLE ""}
	return b[len(CanonicalPrefix)+1 : len(b)-len(CanonicalSuffix)]
}

// Seal sets e.Seq, e.PrevHash and e.Hash so that e follows the event whose
// sequence number and hash are prevSeq and prevHash (0 and GenesisHash for
// the first event).
func Seal(e *Event, prevSeq int64, prevHash string) {
	e.Seq = prevSeq + 1
	e.PrevHash = prevHash
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.Hash = ComputeHash(*e)
}

// Problem is one inconsistency Verify found.
type Problem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return fmt.Sprintf("event %d: %s", p.Seq, p.Reason) }

// Verifier checks a stream of events in sequence order.
type Verifier struct {
	prevSeq  int64
	prevHash string
	Checked  int64
	Problems []Problem
}

// NewVerifier starts a verification at the beginning of the chain.
func NewVerifier() *Verifier { return &Verifier{prevHash: GenesisHash} }

// Add checks the next event.
func (v *Verifier) Add(e Event) {
	v.Checked++
	if e.Seq != v.prevSeq+1 {
		v.Problems = append(v.Problems, Problem{Seq: e.Seq, Reason: fmt.Sprintf("sequence gap: expected %d (events deleted or inserted)", v.prevSeq+1)})
	}
	if e.PrevHash != v.prevHash {
		v.Problems = append(v.Problems, Problem{Seq: e.Seq, Reason: "previous-hash mismatch: the chain is broken before this event"})
	}
	if got := ComputeHash(e); got != e.Hash {
		v.Problems = append(v.Problems, Problem{Seq: e.Seq, Reason: "hash mismatch: the event was edited"})
	}
	v.prevSeq, v.prevHash = e.Seq, e.Hash
}

// OK reports whether no problem was found.
func (v *Verifier) OK() bool { return len(v.Problems) == 0 }

// Marshal encodes v as JSON for an event's Before/After; nil stays nil.
func Marshal(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(fmt.Sprintf("{\"marshalError\":%q}", err.Error()))
	}
	return b
}
