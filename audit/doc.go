// Package audit owns the change-log: the Event type every store write
// records in the same transaction as the change, the SHA-256 hash chain that
// links each event to the one before it, and Verify, which detects an edited,
// inserted or deleted event.
//
// The hash of an event covers its sequence number, the previous event's hash
// and every field, in a canonical JSON encoding (Canonical). An event whose
// stored hash differs from the recomputed one was edited; an event whose
// PrevHash differs from the previous event's hash, or a gap in sequence
// numbers, means events were deleted or inserted.
package audit
