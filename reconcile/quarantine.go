package reconcile

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// ActionQuarantine is the audit action recording that the worker gave up
// on a user after repeated failures (object: the user).
const ActionQuarantine = "reconcile.quarantine"

// Recorder is what QuarantineRecorder writes through.
type Recorder interface {
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

// QuarantineRecorder returns a WorkerOptions.OnQuarantine hook that reports
// each quarantine in the audit log (actor reconcile, object the user, the
// failure count and last error), so it shows in the user's history and in
// the audit views until an admin looks. The full reconcile still covers the
// user; Worker.Release takes it out of quarantine.
func QuarantineRecorder(s Recorder, maxFailures int, log *zap.Logger) func(userID string, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("reconcile")
	return func(userID string, cause error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msg := ""
		if cause != nil {
			msg = cause.Error()
		}
		err := s.Update(ctx, audit.Meta{Actor: audit.ActorReconcile}, func(ctx context.Context, tx store.Tx) error {
			return tx.Record(ctx, ActionQuarantine, "user", userID, nil, map[string]any{"failures": maxFailures, "lastError": msg})
		})
		if err != nil {
			log.Error("record quarantine", zap.String("user_id", userID), zap.Error(err))
		}
	}
}
