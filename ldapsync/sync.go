package ldapsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// ErrUnsafe marks a run aborted by a safety rule (too few entries, a
// truncated read): nothing was marked gone.
var ErrUnsafe = errors.New("unsafe read")

// Job kinds the scheduler runs.
const (
	JobFull        = "ldap-full"
	JobIncremental = "ldap-incremental"
)

// Mode is full or incremental.
type Mode string

// Modes.
const (
	ModeFull        Mode = "full"
	ModeIncremental Mode = "incremental"
)

// Options configures a Syncer.
type Options struct {
	Log  *zap.Logger
	Now  func() time.Time
	Dial Dialer // default Dial
	// afterPage is a test hook called after each page ("users"/"groups", page index).
	afterPage func(kind string, page int)
	// beforeGroups is a test hook called in a full run between the user
	// phase and the group phase (the group read has started beside the
	// user phase's end; the groups are not yet taken).
	beforeGroups func(r *run)
}

// Syncer syncs one LDAP source into the store.
type Syncer struct {
	src    config.LDAPSource
	st     Store
	log    *zap.Logger
	now    func() time.Time
	dial   Dialer
	source string // link and group source: "ldap:<name>"
	opts   Options
}

// New returns a Syncer for src (defaults applied by config loading).
func New(src config.LDAPSource, st Store, opts Options) *Syncer {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Dial == nil {
		opts.Dial = Dial
	}
	return &Syncer{src: src, st: st, log: opts.Log.Named("ldapsync").With(zap.String("source", src.Name)),
		now: opts.Now, dial: opts.Dial, source: "ldap:" + src.Name, opts: opts}
}

// Source is the link/group source name, "ldap:<name>".
func (s *Syncer) Source() string { return s.source }

// RunOptions says what one run does.
type RunOptions struct {
	Full    bool   // force a full sync (else incremental when a cursor exists)
	DryRun  bool   // compute and return the plan, write nothing
	Trigger string // "schedule" or "manual"
	// RunID is the scheduler's run: the caller owns the run record (creates
	// and finishes it; Result.Counts are for it) and ldapsync adds the items.
	// Empty: ldapsync records its own run (job "ldap-full:<source>").
	RunID string
}

// Result is what a run did (or, for a dry run, would do).
type Result struct {
	RunID  string
	Mode   Mode
	Status directory.RunStatus
	// Reason says why the mode differs from the one asked for.
	Reason string
	Counts map[string]int64
	// Items is the plan of a dry run (every change with its reason); for
	// real runs the items are in the store's run report.
	Items []directory.RunItem
}

// cursor is stored (as JSON) under the source name only after a
// successful run.
type cursor struct {
	Dialect         string `json:"dialect"`
	ModifyTimestamp string `json:"modifyTimestamp,omitempty"`
	USN             int64  `json:"usn,omitempty"`
	InvocationID    string `json:"invocationId,omitempty"`
	LastFullUsers   int64  `json:"lastFullUsers"`
	LastFullGroups  int64  `json:"lastFullGroups"`
}

// Run executes one sync. Errors are wrapped; a safety abort wraps ErrUnsafe.
func (s *Syncer) Run(ctx context.Context, ro RunOptions) (*Result, error) {
	if s.src.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.src.RunTimeout)
		defer cancel()
	}
	if ro.Trigger == "" {
		ro.Trigger = "manual"
	}
	ownRun := ro.RunID == ""
	if ownRun {
		ro.RunID = uuid.NewString()
	}
	r := &run{ownRun: ownRun, s: s, m: newMapper(s.src), dry: ro.DryRun, res: &Result{RunID: ro.RunID, Counts: map[string]int64{}},
		meta: audit.Meta{Actor: s.source, RunID: ro.RunID}}
	r.log = s.log.With(zap.String("run_id", ro.RunID))

	var prev cursor
	raw, err := s.st.GetCursor(ctx, s.source)
	switch {
	case err == nil && raw != "":
		if jerr := json.Unmarshal([]byte(raw), &prev); jerr != nil {
			r.log.Warn("unreadable cursor: full sync", zap.Error(jerr))
			prev = cursor{}
			raw = ""
		}
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("ldapsync: read cursor: %w", err)
	}
	r.prev = prev
	r.res.Mode = ModeIncremental
	if ro.Full {
		r.res.Mode = ModeFull
	} else if raw == "" || prev.Dialect != s.src.Dialect ||
		(s.src.Dialect != config.LDAPDialectAD && prev.ModifyTimestamp == "") {
		r.res.Mode, r.res.Reason = ModeFull, "no cursor from a previous successful run"
	}

	job := JobIncremental
	if r.res.Mode == ModeFull {
		job = JobFull
	}
	run := &directory.Run{ID: ro.RunID, Job: job + ":" + s.src.Name, Trigger: ro.Trigger, Status: directory.RunRunning,
		StartedAt: s.now()}
	if !r.dry && ownRun {
		if err := s.st.Update(ctx, r.meta, func(ctx context.Context, tx store.Tx) error {
			return tx.CreateRun(ctx, run)
		}); err != nil {
			return nil, fmt.Errorf("ldapsync: create run: %w", err)
		}
		if run.ID != "" && run.ID != ro.RunID {
			r.res.RunID, r.meta.RunID = run.ID, run.ID
		}
	}
	next, err := r.execute(ctx)
	return r.finish(ctx, run, next, err)
}

func (r *run) execute(ctx context.Context) (*cursor, error) {
	s := r.s
	c, err := s.dial(ctx, s.src)
	if err != nil {
		return nil, err
	}
	cc := withContext(ctx, c)
	cc.ignoreReferrals = s.src.Referrals == config.LDAPReferralsIgnore
	r.conn = cc
	defer r.conn.Close()
	defer func() {
		if n := cc.referrals.Load(); n > 0 {
			r.res.Counts["referrals_ignored"] = n
		}
	}()

	next := &cursor{Dialect: s.src.Dialect, LastFullUsers: r.prev.LastFullUsers, LastFullGroups: r.prev.LastFullGroups,
		ModifyTimestamp: r.prev.ModifyTimestamp, USN: r.prev.USN, InvocationID: r.prev.InvocationID}
	if r.m.ad {
		usn, inv, err := r.rootDSE()
		if err != nil {
			return nil, err
		}
		if r.res.Mode == ModeIncremental && inv != r.prev.InvocationID {
			r.res.Mode = ModeFull
			r.res.Reason = fmt.Sprintf("domain controller changed (invocationId %s, was %s): full sync", inv, r.prev.InvocationID)
		}
		// Changes from now on have a higher USN than the one read before the search.
		next.USN, next.InvocationID = usn, inv
	}
	r.log.Info("ldap sync start", zap.String("mode", string(r.res.Mode)), zap.Bool("dry_run", r.dry))
	// The server's clock, approximated by the real one (Options.Now may be
	// a test clock): the modifyTimestamp high-water mark never passes it.
	readStart := time.Now().UTC().Format(genTime)
	if r.res.Mode == ModeFull {
		err = r.full(ctx, next)
	} else {
		err = r.incremental(ctx, next)
	}
	if err != nil {
		return nil, err
	}
	// An entry changed during the read after its own entry was read has an
	// older modifyTimestamp than entries read later: a mark past the read's
	// start (less the overlap) would skip it next time.
	if hw := min(r.maxChange.modTime, readStart); !r.m.ad && hw > next.ModifyTimestamp {
		next.ModifyTimestamp = hw
	}
	return next, nil
}

// rootDSE reads AD's highestCommittedUSN and the invocationId of the DC.
func (r *run) rootDSE() (int64, string, error) {
	e, err := readBase(r.conn, "", []string{"highestCommittedUSN", "dsServiceName"})
	if err != nil {
		return 0, "", err
	}
	var usn int64
	if _, err := fmt.Sscan(e.GetEqualFoldAttributeValue("highestCommittedUSN"), &usn); err != nil {
		return 0, "", fmt.Errorf("ldapsync: rootDSE highestCommittedUSN: %w", err)
	}
	svc := e.GetEqualFoldAttributeValue("dsServiceName")
	ds, err := readBase(r.conn, svc, []string{"invocationId"})
	if err != nil {
		return 0, "", err
	}
	inv, err := GUIDString(ds.GetEqualFoldRawAttributeValue("invocationId"))
	if err != nil {
		return 0, "", fmt.Errorf("ldapsync: invocationId of %q: %w", svc, err)
	}
	return usn, inv, nil
}

func (r *run) finish(ctx context.Context, run *directory.Run, next *cursor, runErr error) (*Result, error) {
	res := r.res
	now := r.s.now()
	run.FinishedAt = &now
	run.Counts = res.Counts
	switch {
	case runErr == nil:
		res.Status = directory.RunOK
	case errors.Is(runErr, ErrUnsafe) || errors.Is(runErr, ErrTruncated):
		res.Status = directory.RunAborted
	default:
		res.Status = directory.RunFailed
	}
	run.Status = res.Status
	if runErr != nil {
		run.Error = runErr.Error()
		r.log.Error("ldap sync failed: nothing marked gone", zap.String("status", string(res.Status)), zap.Error(runErr))
		if r.dry {
			res.Items = append(res.Items, r.item("failed", "run", res.RunID, runErr.Error()))
		}
	} else {
		r.log.Info("ldap sync done", zap.String("mode", string(res.Mode)), zap.Any("counts", res.Counts))
	}
	if r.dry {
		if runErr != nil {
			return res, runErr
		}
		return res, nil
	}
	// The run record is finished even when the run's context has ended.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := r.s.st.Update(fctx, r.meta, func(ctx context.Context, tx store.Tx) error {
		if runErr != nil {
			if err := tx.AddRunItems(ctx, []directory.RunItem{r.item("failed", "run", res.RunID, runErr.Error())}); err != nil {
				return err
			}
		}
		if r.ownRun {
			if err := tx.UpdateRun(ctx, run); err != nil {
				return err
			}
		}
		if runErr == nil && next != nil {
			b, _ := json.Marshal(next)
			if string(b) != r.prevRaw() {
				return tx.SetCursor(ctx, r.s.source, string(b))
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("ldapsync: finish run: %w", err)
		if runErr == nil {
			return res, err
		}
		return res, errors.Join(runErr, err)
	}
	return res, runErr
}

func (r *run) prevRaw() string {
	if r.prev.Dialect == "" {
		return ""
	}
	b, _ := json.Marshal(r.prev)
	return string(b)
}

// full reads every user and group, then (only if the read is complete and
// big enough) writes memberships and marks what is missing as gone.
func (r *run) full(ctx context.Context, next *cursor) error {
	// The store's state is read while the users are: entries read before
	// it is done wait, mapped, in the backlog (userBatch).
	pf := make(chan error, 1)
	go func() { pf <- r.prefetch(ctx) }()
	var pfErr error
	r.prefetchWait = func(block bool) (bool, error) {
		if pf == nil {
			return true, pfErr
		}
		if !block {
			select {
			case pfErr = <-pf:
			default:
				return false, nil
			}
		} else {
			pfErr = <-pf
		}
		pf = nil
		return true, pfErr
	}
	err := r.syncUsers(ctx, r.s.src.UserFilter)
	var gr *groupReader
	if err == nil {
		// The groups are read from here on, beside the planning of the
		// users still in the backlog (groupread.go).
		gr = r.startGroupRead(ctx, r.s.src.GroupFilter)
		defer gr.stop()
	}
	if _, perr := r.prefetchWait(true); perr != nil {
		return perr
	}
	if err != nil {
		return err // what is in the backlog is not written
	}
	if err := r.drainBacklog(ctx); err != nil {
		return err
	}
	if err := r.checkFraction("users", int64(r.usersSeen-r.keyless), r.prev.LastFullUsers, int64(r.liveLinks)); err != nil {
		return err
	}
	r.dropUserLookups()
	if r.s.opts.beforeGroups != nil {
		r.s.opts.beforeGroups(r)
	}
	groups, err := r.collectGroups(ctx, gr)
	if err != nil {
		return err
	}
	r.dnIdx, r.nameIdx = nil, nil // members are resolved to indexes into r.ids
	liveGroups := 0
	if r.prev.LastFullGroups == 0 {
		// No last full sync to compare with: compare with the stored groups.
		if err := r.loadGroups(ctx); err != nil {
			return err
		}
		for _, g := range r.groups {
			if g.DeletedAt == nil {
				liveGroups++
			}
		}
	}
	if err := r.checkFraction("groups", int64(len(groups)), r.prev.LastFullGroups, int64(liveGroups)); err != nil {
		return err
	}
	if r.keyless > 0 {
		return fmt.Errorf("ldapsync: %d entries have no readable %s, so no user can be called gone: %w",
			r.keyless, r.s.src.Attributes.StableID, ErrUnsafe)
	}
	// The read is complete: from here on removals are allowed.
	if err := r.writeGroups(ctx, groups, true); err != nil {
		return err
	}
	if err := r.markGone(ctx); err != nil {
		return err
	}
	r.storeSnapshot(ctx)
	next.LastFullUsers, next.LastFullGroups = int64(r.usersSeen), int64(len(groups))
	r.res.Counts["users_seen"] = int64(r.usersSeen)
	r.res.Counts["groups_seen"] = int64(len(groups))
	return nil
}

// checkFraction aborts when a full read returns fewer entries than the
// configured fraction of the last successful full sync (or, without one,
// of the source's live links).
func (r *run) checkFraction(kind string, got, lastFull, live int64) error {
	base := lastFull
	if base == 0 {
		base = live
	}
	min := r.s.src.ShrinkGuard() // 0: the guard is off
	if base > 0 && float64(got) < min*float64(base) {
		return fmt.Errorf("ldapsync: full sync read %d %s, fewer than %.0f%% of the %d last time: %w",
			got, kind, min*100, base, ErrUnsafe)
	}
	return nil
}

// incremental reads entries changed since the cursor (with an overlap).
func (r *run) incremental(ctx context.Context, next *cursor) error {
	var since string
	if r.m.ad {
		since = fmt.Sprintf("(uSNChanged>=%d)", r.prev.USN+1)
	} else {
		t, err := time.Parse(genTime, r.prev.ModifyTimestamp)
		if err != nil {
			return fmt.Errorf("ldapsync: cursor modifyTimestamp %q: %w", r.prev.ModifyTimestamp, err)
		}
		since = fmt.Sprintf("(modifyTimestamp>=%s)", t.Add(-r.s.src.Overlap).UTC().Format(genTime))
	}
	if err := r.syncUsers(ctx, "(&"+r.s.src.UserFilter+since+")"); err != nil {
		return err
	}
	r.res.Counts["users_seen"] = int64(r.usersSeen)
	if r.m.ad {
		if err := r.tombstones(ctx); err != nil { // tombstones.go
			return err
		}
	}
	changed, err := r.countGroups(ctx, "(&"+r.s.src.GroupFilter+since+")")
	if err != nil {
		return err
	}
	r.res.Counts["groups_changed"] = int64(changed)
	if changed == 0 {
		return nil
	}
	// A group changed: rebuild memberships from the whole (local) graph,
	// since nested membership of every ancestor may change.
	if err := r.prefetch(ctx); err != nil {
		return err
	}
	if err := r.indexFromLinks(ctx); err != nil {
		return err
	}
	bad := r.keyless
	groups, err := r.fetchGroups(ctx, r.s.src.GroupFilter)
	if err != nil {
		return err
	}
	if err := r.checkFraction("groups", int64(len(groups)), r.prev.LastFullGroups, 0); err != nil {
		return err
	}
	if n := r.keyless - bad; n > 0 {
		// A group left out of the graph would take its members out of
		// every parent group: the group read is not complete.
		return fmt.Errorf("ldapsync: %d group entries have no readable %s, so memberships cannot be rebuilt: %w",
			n, r.s.src.Attributes.StableID, ErrUnsafe)
	}
	return r.writeGroups(ctx, groups, false)
}

func (r *run) item(action, objType, id, reason string) directory.RunItem {
	r.seq++
	return directory.RunItem{RunID: r.res.RunID, Seq: r.seq, Action: action, ObjectType: objType, ObjectID: id, Reason: reason}
}

func lower(s string) string { return strings.ToLower(s) }
