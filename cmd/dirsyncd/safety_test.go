package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/ldapsync"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// TestSafetyAbort: the errors with which the LDAP and CWA syncs refuse to
// remove anything make a scheduled run "aborted" (scheduler.ErrAborted),
// keeping their message and what they wrap; other errors stay failures.
func TestSafetyAbort(t *testing.T) {
	for _, c := range []struct {
		err     error
		aborted bool
	}{
		{fmt.Errorf("ldapsync: full read of 10 entries: %w", ldapsync.ErrUnsafe), true},
		{fmt.Errorf("ldapsync: page 3: %w", ldapsync.ErrTruncated), true},
		{fmt.Errorf("cwa: %w: 2 firms", cwasync.ErrSnapshotTooSmall), true},
		{errors.New("ldap: dial: connection refused"), false},
		{nil, false},
	} {
		got := safetyAbort(c.err)
		if errors.Is(got, scheduler.ErrAborted) != c.aborted {
			t.Errorf("%v: aborted = %v, want %v", c.err, !c.aborted, c.aborted)
		}
		if c.err == nil {
			if got != nil {
				t.Errorf("nil became %v", got)
			}
			continue
		}
		if got.Error() != c.err.Error() || !errors.Is(got, errors.Unwrap(c.err)) && errors.Unwrap(c.err) != nil {
			t.Errorf("%v: became %q, lost its message or cause", c.err, got)
		}
	}
}
