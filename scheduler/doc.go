// Package scheduler runs dirsyncd's jobs: robfig/cron v3 schedules (UTC,
// with Recover and SkipIfStillRunning), one leader among replicas through a
// store lease, a run record (directory.Run) for every execution, manual
// triggers, and a shutdown that lets a run in flight finish until a deadline
// and otherwise cancels it and marks it aborted.
//
// A job is a JobFunc registered by kind; the configuration names jobs
// (name, kind, schedule, params). Every run is recorded through
// Store.Update with actor "scheduler": created as "running" before the job
// starts, finished as ok, failed (with the error), aborted (deadline passed
// or context cancelled) or held (the job called RunContext.Hold).
//
// Only the lease holder fires scheduled jobs; a replica that finds another
// holding the lease (its own lapsed) cancels its scheduled runs in flight,
// recorded aborted, so that they do not run beside the new leader's.
// Manual triggers run on the
// replica that received them; a job never runs twice at once, within one
// scheduler nor across replicas and the CLI on one store: every run holds
// the job's own lease ("job:<name>", renewed while it runs, released at its
// end), and a trigger of a running job gets ErrBusy, a scheduled tick is
// skipped. The package imports no domain logic: jobs come from the
// features through cmd/dirsyncd.
package scheduler
