package scheduler

import "errors"

// ErrAborted marks a job error as a safety abort: the job stopped itself
// before changing anything it should not (a source read that failed, was
// truncated or was suspiciously small), so the run is recorded "aborted",
// as a run cut short by shutdown is, and not "failed". Jobs return
// Aborted(err) rather than ErrAborted itself.
var ErrAborted = errors.New("run aborted by its job")

// Aborted wraps err as a safety abort: the message stays err's, and
// errors.Is finds both ErrAborted and what err wraps.
func Aborted(err error) error {
	if err == nil {
		return nil
	}
	return abortedErr{err}
}

type abortedErr struct{ err error }

func (e abortedErr) Error() string   { return e.err.Error() }
func (e abortedErr) Unwrap() []error { return []error{ErrAborted, e.err} }
