package main

import (
	"errors"

	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/ldapsync"
	"github.com/dirsyncd/dirsyncd/scheduler"
)

// safetyAbort marks the errors with which a source sync refuses to go on
// before removing anything (an unsafe or truncated LDAP read, a suspiciously
// small CWA snapshot) as scheduler.Aborted, so a scheduled run records the
// same "aborted" status as `dirsyncd sync ldap` does; other errors stay
// failures.
func safetyAbort(err error) error {
	if errors.Is(err, ldapsync.ErrUnsafe) || errors.Is(err, ldapsync.ErrTruncated) || errors.Is(err, cwasync.ErrSnapshotTooSmall) {
		return scheduler.Aborted(err)
	}
	return err
}
