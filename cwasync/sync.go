package cwasync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Source is the link source and cursor name of CWA.
const Source = "cwa"

// ErrSnapshotTooSmall: the snapshot has suspiciously fewer firms or offices
// than the last good one; nothing was changed.
var ErrSnapshotTooSmall = errors.New("cwa snapshot suspiciously small")

// Store is what cwasync needs of store.Store: reads of the current firms,
// offices, legacy logins and CWA links, the users (for their e-mails), the cursor, and
// Update. Inside Update it calls only PutFirm, PutOffice, PutLegacyLogin,
// PutLink (or their bulk forms, when the Tx has BulkTx and BulkLinkTx),
// MarkLinkGone, AddRunItems and SetCursor.
type Store interface {
	ListUsersAfter(ctx context.Context, afterID string, limit int) ([]directory.User, error)
	ListFirms(ctx context.Context) ([]directory.Firm, error)
	ListOffices(ctx context.Context, firmNumber string) ([]directory.Office, error)
	ListLegacyLogins(ctx context.Context, q store.LegacyLoginQuery) ([]directory.LegacyLogin, error)
	ListLinks(ctx context.Context, source string, after string, limit int) ([]directory.SourceLink, error)
	GetCursor(ctx context.Context, source string) (string, error)
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
}

var _ Store = store.Store(nil)

// API is the part of the CWA client a sync uses (*Client implements it).
type API interface {
	Snapshot(ctx context.Context) ([]OfficeRow, error)
	FirmUsers(ctx context.Context, firmNumber string) ([]ProviderUser, error)
	UserOffices(ctx context.Context, login string) ([]string, error)
}

var _ API = (*Client)(nil)

// Options configure a Syncer.
type Options struct {
	// Concurrency bounds the per-firm and per-login requests (and e-mail
	// look-ups) in flight; default 8.
	Concurrency int
	// MinFraction (the shrink guard): a snapshot with fewer firms,
	// offices or legacy logins than this fraction of the last good run's
	// aborts the run.
	// 0 means the default 0.5; ShrinkGuardOff (any negative value)
	// switches the check off (config: cwa.minFraction: 0).
	MinFraction float64
	Now         func() time.Time
	Log         *zap.Logger
}

// ShrinkGuardOff as Options.MinFraction switches the shrink guard off.
const ShrinkGuardOff = -1

// Syncer pulls CWA into the store.
type Syncer struct {
	api API
	st  Store
	o   Options
	log *zap.Logger
}

// New returns a Syncer reading api and writing st.
func New(api API, st Store, o Options) *Syncer {
	if o.Concurrency <= 0 {
		o.Concurrency = 16 // config.DefaultCWAConcurrency
	}
	if o.MinFraction == 0 {
		o.MinFraction = 0.5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Syncer{api: api, st: st, o: o, log: log.Named("cwa")}
}

// Report is what a run did (or, dry, would do).
type Report struct {
	DryRun bool
	// Counts: rows, firms, offices, logins (seen in CWA); created, updated,
	// disabled, dropped, rejected, repaired, linked, unlinked, gone,
	// unmatched (logins without a user); and per type: firms_created, ...
	Counts map[string]int64
	// Items: every change with its reason, then every dropped, rejected and
	// repaired row; unmatched logins when they become unmatched.
	Items []directory.RunItem
	// Writes is the number of store writes the run made (or would make);
	// 0 on a repeat with no changes.
	Writes int
	// Took is the wall time of each phase: snapshot, fetch (logins, office
	// codes, users; the state is read meanwhile), state (store reads), apply.
	Took map[string]time.Duration
}

// cursor is what the last good run saw (the safety baseline).
type cursor struct {
	Firms   int `json:"firms"`
	Offices int `json:"offices"`
	Logins  int `json:"logins"`
}

type fetchedLogin struct {
	firm   string
	user   ProviderUser
	codes  []string // valid codes of the firm, sorted
	reject []string // why other codes were left out
	userID string   // matched user, "" when none
	noUser string   // why there is no user
}

// Sync runs one CWA sync: read everything, check it, compute the changes,
// and (unless dryRun) apply them in one store transaction with actor "cwa"
// and runID. Any read error aborts before anything is written; the run
// then gets one item saying why (see abort) and the error is returned with
// a report holding that item.
func (s *Syncer) Sync(ctx context.Context, runID string, dryRun bool) (*Report, error) {
	rep, err := s.sync(ctx, runID, dryRun)
	if err != nil {
		return s.abort(ctx, runID, dryRun, err)
	}
	return rep, nil
}

// ActionFailed and ObjRun: the run item of an aborted run (as ldapsync's):
// action "failed" on object "run" (the run id), the reason saying why and
// that nothing was changed.
const (
	ActionFailed = "failed"
	ObjRun       = "run"
)

// abort records why the run stopped: one run item (in its own small
// transaction, since the run's transaction was rolled back or never began;
// run items are not audit events) unless it is a dry run or there is no
// run. It returns a report with that item and err, joined with the error
// of recording it, if any.
func (s *Syncer) abort(ctx context.Context, runID string, dryRun bool, err error) (*Report, error) {
	why := "run aborted, nothing was changed: "
	var ae *applyError
	switch {
	case errors.Is(err, ErrSnapshotTooSmall):
		why = "run aborted by the shrink guard (cwa.minFraction), nothing was changed: "
	case errors.As(err, &ae):
		why = "run failed writing its changes (one transaction, not committed): "
	}
	it := directory.RunItem{RunID: runID, Action: ActionFailed, ObjectType: ObjRun, ObjectID: runID, Reason: why + err.Error()}
	rep := &Report{DryRun: dryRun, Counts: map[string]int64{}, Items: []directory.RunItem{it}}
	s.log.Error("cwa sync aborted: nothing changed", zap.String("run_id", runID), zap.Error(err))
	if dryRun || runID == "" {
		return rep, err
	}
	// Recorded even when the run's context has ended (timeout, shutdown).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rerr := s.st.Update(rctx, audit.Meta{Actor: audit.ActorCWA, RunID: runID}, func(ctx context.Context, tx store.Tx) error {
		return tx.AddRunItems(ctx, []directory.RunItem{it})
	})
	if rerr != nil {
		return rep, errors.Join(err, fmt.Errorf("cwasync: record the abort in run %s: %w", runID, rerr))
	}
	return rep, err
}

// applyError marks a failure of the write transaction (after every read
// succeeded), for the abort item's wording.
type applyError struct{ err error }

func (e *applyError) Error() string { return e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

func (s *Syncer) sync(ctx context.Context, runID string, dryRun bool) (*Report, error) {
	log := s.log.With(zap.String("run_id", runID), zap.Bool("dry_run", dryRun))
	start := s.o.Now()
	took := map[string]time.Duration{}
	t0 := time.Now()
	lap := func(phase string) { took[phase] = time.Since(t0); t0 = time.Now() }

	rows, err := s.api.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	snap := ApplyRules(rows)
	last, fromCursor, err := s.checkSize(ctx, snap)
	if err != nil {
		return nil, err
	}
	lap("snapshot")
	// The store's state is read while CWA is being read (both before any write).
	var cur *state
	var stateTook time.Duration
	stateDone := make(chan error, 1)
	go func() {
		t := time.Now()
		var err error
		cur, err = s.loadState(ctx)
		stateTook = time.Since(t)
		stateDone <- err
	}()
	logins, items, err := s.fetchLogins(ctx, snap)
	if serr := <-stateDone; err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkLogins(len(logins)+keptLogins(snap, logins, cur), last, fromCursor, cur); err != nil {
		return nil, err
	}
	lap("fetch")
	took["state"] = stateTook
	p := s.plan(snap, logins, cur)
	p.report.DryRun, p.report.Took = dryRun, took
	p.report.Items = append(p.report.Items, snap.Items...)
	p.report.Items = append(p.report.Items, items...)
	p.count("rows", int64(snap.Rows))
	p.count("firms", int64(len(snap.Firms)))
	p.count("offices", int64(len(snap.Offices)))
	p.count("logins", int64(len(logins)))
	for _, it := range snap.Items {
		p.count(it.Action, 1)
	}
	for _, it := range items {
		p.count(it.Action, 1)
	}
	newCursor, _ := json.Marshal(cursor{Firms: len(snap.Firms), Offices: len(snap.Offices), Logins: len(logins)})
	cursorChanged := string(newCursor) != cur.cursor
	p.report.Writes = p.writes()
	if cursorChanged {
		p.report.Writes++
	}
	if dryRun {
		log.Info("cwa dry run", zap.Int("changes", p.writes()), zap.Any("counts", p.report.Counts))
		return &p.report, nil
	}
	if p.writes() == 0 && !cursorChanged && (runID == "" || len(p.report.Items) == 0) {
		log.Info("cwa sync: no changes", zap.Any("counts", p.report.Counts), zap.Duration("took", s.o.Now().Sub(start)))
		return &p.report, nil
	}
	err = s.st.Update(ctx, audit.Meta{Actor: audit.ActorCWA, RunID: runID}, func(ctx context.Context, tx store.Tx) error {
		if err := p.apply(ctx, tx); err != nil {
			return err
		}
		if cursorChanged {
			if err := tx.SetCursor(ctx, Source, string(newCursor)); err != nil {
				return fmt.Errorf("cwasync: set cursor: %w", err)
			}
		}
		if runID != "" && len(p.report.Items) > 0 {
			its := make([]directory.RunItem, len(p.report.Items))
			for i, it := range p.report.Items {
				it.RunID = runID // Seq 0: the store numbers them after the run's existing items
				its[i] = it
			}
			if err := tx.AddRunItems(ctx, its); err != nil {
				return fmt.Errorf("cwasync: add run items: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, &applyError{fmt.Errorf("cwasync: apply: %w", err)}
	}
	lap("apply")
	log.Info("cwa sync done", zap.Int("writes", p.report.Writes), zap.Any("counts", p.report.Counts),
		zap.Duration("took", s.o.Now().Sub(start)))
	return &p.report, nil
}

// checkSize aborts when the snapshot has fewer firms or offices than
// MinFraction of the last good snapshot (the cursor; without one, of what
// the store holds enabled). It returns that baseline, and whether it came
// from the cursor, for checkLogins.
func (s *Syncer) checkSize(ctx context.Context, snap *Snapshot) (last cursor, fromCursor bool, err error) {
	if s.o.MinFraction < 0 {
		s.log.Warn("cwa shrink guard is off (cwa.minFraction: 0): the snapshot is applied whatever its size",
			zap.Int("firms", len(snap.Firms)), zap.Int("offices", len(snap.Offices)))
		return last, false, nil
	}
	raw, err := s.st.GetCursor(ctx, Source)
	switch {
	case err == nil && raw != "":
		if err := json.Unmarshal([]byte(raw), &last); err != nil {
			return last, false, fmt.Errorf("cwasync: read cursor: %w", err)
		}
		fromCursor = true
	case err == nil || errors.Is(err, store.ErrNotFound):
		firms, err := s.st.ListFirms(ctx)
		if err != nil {
			return last, false, fmt.Errorf("cwasync: list firms: %w", err)
		}
		for _, f := range firms {
			if f.Enabled {
				last.Firms++
			}
		}
		offices, err := s.st.ListOffices(ctx, "")
		if err != nil {
			return last, false, fmt.Errorf("cwasync: list offices: %w", err)
		}
		for _, o := range offices {
			if o.Active {
				last.Offices++
			}
		}
	default:
		return last, false, fmt.Errorf("cwasync: read cursor: %w", err)
	}
	if len(snap.Firms) < s.atLeast(last.Firms) || len(snap.Offices) < s.atLeast(last.Offices) {
		return last, fromCursor, fmt.Errorf("cwasync: %w: %d firms and %d offices (from %d rows), the last good snapshot had %d and %d; minimum fraction %.2f; nothing was changed",
			ErrSnapshotTooSmall, len(snap.Firms), len(snap.Offices), snap.Rows, last.Firms, last.Offices, s.o.MinFraction)
	}
	return last, fromCursor, nil
}

// keptLogins counts the stored logins of held firms (not read, kept as
// they are) that still have a user link or office codes.
func keptLogins(snap *Snapshot, logins map[string]*fetchedLogin, cur *state) int {
	n := 0
	for key, l := range cur.logins {
		if _, read := logins[key]; !read && snap.Held[l.FirmNumber] && (l.UserID != "" || len(l.OfficeCodes) > 0) {
			n++
		}
	}
	return n
}

func (s *Syncer) atLeast(n int) int { return int(math.Ceil(float64(n) * s.o.MinFraction)) }

// checkLogins is the shrink guard for legacy logins (every firm present
// but listing far fewer logins, e.g. empty answers during an outage): n
// logins read against the last good run's count (the cursor; without one,
// the stored logins that still have a user link or office codes).
func (s *Syncer) checkLogins(n int, last cursor, fromCursor bool, cur *state) error {
	if s.o.MinFraction < 0 {
		return nil
	}
	if !fromCursor {
		last.Logins = 0
		for _, l := range cur.logins {
			if l.UserID != "" || len(l.OfficeCodes) > 0 {
				last.Logins++
			}
		}
	}
	if n < s.atLeast(last.Logins) {
		return fmt.Errorf("cwasync: %w: %d legacy logins, the last good run had %d; minimum fraction %.2f; nothing was changed",
			ErrSnapshotTooSmall, n, last.Logins, s.o.MinFraction)
	}
	return nil
}

// fetchLogins reads every firm's logins, then every login's offices and
// its user by e-mail, with bounded concurrency. Any error aborts.
func (s *Syncer) fetchLogins(ctx context.Context, snap *Snapshot) (map[string]*fetchedLogin, []directory.RunItem, error) {
	firms := make([]string, 0, len(snap.Firms))
	for n := range snap.Firms {
		firms = append(firms, n)
	}
	sort.Strings(firms)
	perFirm := make([][]ProviderUser, len(firms))
	if err := forEach(ctx, len(firms), s.o.Concurrency, func(ctx context.Context, i int) (err error) {
		perFirm[i], err = s.api.FirmUsers(ctx, firms[i])
		return err
	}); err != nil {
		return nil, nil, err
	}

	var items []directory.RunItem
	logins := map[string]*fetchedLogin{}
	for i, n := range firms { // firms sorted: a login listed twice stays with the first firm
		for _, u := range perFirm[i] {
			u.UserLogin = strings.TrimSpace(u.UserLogin)
			u.Email = strings.TrimSpace(u.Email)
			switch prev, dup := logins[u.UserLogin]; {
			case u.UserLogin == "":
				items = append(items, directory.RunItem{Action: ActionRejected, ObjectType: ObjLegacyLogin, ObjectID: "firm " + n,
					Reason: "legacy login without a userLogin in firm " + n})
			case dup && prev.firm != n:
				items = append(items, directory.RunItem{Action: ActionRejected, ObjectType: ObjLegacyLogin, ObjectID: u.UserLogin,
					Reason: fmt.Sprintf("also listed by firm %s; kept in firm %s", n, prev.firm)})
			case dup:
			default:
				logins[u.UserLogin] = &fetchedLogin{firm: n, user: u}
			}
		}
	}

	var byEmail map[string]string
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		byEmail, err = s.usersByEmail(gctx)
		return err
	})
	todo := make([]*fetchedLogin, 0, len(logins))
	for _, l := range logins {
		todo = append(todo, l)
	}
	g.Go(func() error {
		return forEach(gctx, len(todo), s.o.Concurrency, func(ctx context.Context, i int) error {
			l := todo[i]
			codes, err := s.api.UserOffices(ctx, l.user.UserLogin)
			if err != nil {
				return err
			}
			l.codes, l.reject = snap.loginFacts(l.firm, codes)
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, l := range logins {
		switch id := byEmail[strings.ToLower(l.user.Email)]; {
		case l.user.Email == "":
			l.noUser = "legacy login has no e-mail"
		case id == "":
			l.noUser = "no user has e-mail " + l.user.Email
		default:
			l.userID = id
		}
	}
	return logins, items, nil
}

// usersByEmail maps the lower-cased primary e-mail of every user that is
// not deleted to the user's id (e-mails are unique case-insensitively, and
// one paged read is far cheaper than a look-up per login). The pages follow
// the id (keyset), not an offset: a user deleted or losing its e-mail
// between two pages must not shift another user out of the read, whose
// logins would then be unmatched and lose their link.
func (s *Syncer) usersByEmail(ctx context.Context) (map[string]string, error) {
	const page = 5000
	out := map[string]string{}
	for after := ""; ; {
		us, err := s.st.ListUsersAfter(ctx, after, page)
		if err != nil {
			return nil, fmt.Errorf("cwasync: list users: %w", err)
		}
		for _, u := range us {
			if u.Email != "" && u.DeletedAt == nil {
				out[strings.ToLower(u.Email)] = u.ID
			}
		}
		if len(us) < page {
			return out, nil
		}
		after = us[len(us)-1].ID
	}
}

// state is what the store holds now.
type state struct {
	firms   map[string]directory.Firm
	offices map[string]directory.Office
	logins  map[string]directory.LegacyLogin
	links   map[string]directory.SourceLink // by login
	cursor  string
}

func (s *Syncer) loadState(ctx context.Context) (*state, error) {
	st := &state{firms: map[string]directory.Firm{}, offices: map[string]directory.Office{},
		logins: map[string]directory.LegacyLogin{}, links: map[string]directory.SourceLink{}}
	firms, err := s.st.ListFirms(ctx)
	if err != nil {
		return nil, fmt.Errorf("cwasync: list firms: %w", err)
	}
	for _, f := range firms {
		st.firms[f.Number] = f
	}
	offices, err := s.st.ListOffices(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("cwasync: list offices: %w", err)
	}
	for _, o := range offices {
		st.offices[o.Code] = o
	}
	logins, err := s.st.ListLegacyLogins(ctx, store.LegacyLoginQuery{})
	if err != nil {
		return nil, fmt.Errorf("cwasync: list legacy logins: %w", err)
	}
	for _, l := range logins {
		st.logins[l.Login] = l
	}
	const page = 5000
	for after := ""; ; {
		links, err := s.st.ListLinks(ctx, Source, after, page)
		if err != nil {
			return nil, fmt.Errorf("cwasync: list links: %w", err)
		}
		for _, l := range links {
			st.links[l.Key] = l
		}
		if len(links) < page {
			break
		}
		after = links[len(links)-1].Key
	}
	raw, err := s.st.GetCursor(ctx, Source)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("cwasync: read cursor: %w", err)
	}
	st.cursor = raw
	return st, nil
}

// plan holds the writes to make and the report.
type plan struct {
	firms   []*directory.Firm
	offices []*directory.Office
	logins  []*directory.LegacyLogin
	links   []directory.SourceLink                         // links to put
	ops     []func(ctx context.Context, tx store.Tx) error // links to mark gone
	report  Report
}

func (p *plan) writes() int {
	return len(p.firms) + len(p.offices) + len(p.logins) + len(p.links) + len(p.ops)
}

// BulkTx is implemented by transactions that can write many firms,
// offices and legacy logins at once (the SQL store's); with another Tx the
// sync writes them one by one.
type BulkTx interface {
	PutFirms(ctx context.Context, fs []*directory.Firm) (int, error)
	PutOffices(ctx context.Context, os []*directory.Office) (int, error)
	PutLegacyLogins(ctx context.Context, ls []*directory.LegacyLogin) (int, error)
}

// BulkLinkTx is implemented by transactions that can write many source
// links at once (the SQL store's); with another Tx the sync puts them one
// by one.
type BulkLinkTx interface {
	PutLinks(ctx context.Context, ls []directory.SourceLink) (int, error)
}

// apply makes the planned writes in tx.
func (p *plan) apply(ctx context.Context, tx store.Tx) error {
	if b, ok := tx.(BulkTx); ok {
		if _, err := b.PutFirms(ctx, p.firms); err != nil {
			return fmt.Errorf("cwasync: put firms: %w", err)
		}
		if _, err := b.PutOffices(ctx, p.offices); err != nil {
			return fmt.Errorf("cwasync: put offices: %w", err)
		}
		if _, err := b.PutLegacyLogins(ctx, p.logins); err != nil {
			return fmt.Errorf("cwasync: put legacy logins: %w", err)
		}
	} else {
		for _, f := range p.firms {
			if err := tx.PutFirm(ctx, f); err != nil {
				return fmt.Errorf("cwasync: put firm %s: %w", f.Number, err)
			}
		}
		for _, o := range p.offices {
			if err := tx.PutOffice(ctx, o); err != nil {
				return fmt.Errorf("cwasync: put office %s: %w", o.Code, err)
			}
		}
		for _, l := range p.logins {
			if err := tx.PutLegacyLogin(ctx, l); err != nil {
				return fmt.Errorf("cwasync: put legacy login %s: %w", l.Login, err)
			}
		}
	}
	if b, ok := tx.(BulkLinkTx); ok {
		if _, err := b.PutLinks(ctx, p.links); err != nil {
			return fmt.Errorf("cwasync: link logins: %w", err)
		}
	} else {
		for _, l := range p.links {
			if err := tx.PutLink(ctx, l); err != nil {
				return fmt.Errorf("cwasync: link login %s: %w", l.Key, err)
			}
		}
	}
	for _, op := range p.ops {
		if err := op(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

func (p *plan) count(name string, n int64) {
	if p.report.Counts == nil {
		p.report.Counts = map[string]int64{}
	}
	p.report.Counts[name] += n
}

func (p *plan) item(action, typ, id, reason string) {
	p.report.Items = append(p.report.Items, directory.RunItem{Action: action, ObjectType: typ, ObjectID: id, Reason: reason})
	p.count(action, 1)
	switch action {
	case ActionCreated, ActionUpdated, ActionDisabled:
		p.count(typeCount[typ]+action, 1)
	}
}

// typeCount prefixes the per-type counts (firms_created, ...).
var typeCount = map[string]string{ObjFirm: "firms_", ObjOffice: "offices_", ObjLegacyLogin: "legacy_logins_"}

func (p *plan) op(fn func(ctx context.Context, tx store.Tx) error) { p.ops = append(p.ops, fn) }

// plan compares what CWA says with what the store holds: the writes (firms,
// offices, legacy logins, then links) and a report item for each.
func (s *Syncer) plan(snap *Snapshot, logins map[string]*fetchedLogin, cur *state) *plan {
	p := &plan{}
	p.report.Items = make([]directory.RunItem, 0, len(snap.Firms)+len(snap.Offices)+2*len(logins)+len(snap.Items))
	now := s.o.Now().UTC()

	// Firms in the snapshot, then the firms to disable.
	for _, n := range sortedKeys(snap.Firms) {
		want := snap.Firms[n]
		if have, exists := cur.firms[n]; exists {
			what := diffFirm(have, want)
			if len(what) == 0 {
				continue
			}
			p.item(ActionUpdated, ObjFirm, n, strings.Join(what, "; "))
		} else {
			p.item(ActionCreated, ObjFirm, n, "new in the CWA snapshot")
		}
		f := want
		p.firms = append(p.firms, &f)
	}
	for _, n := range sortedKeys(cur.firms) {
		have := cur.firms[n]
		if _, ok := snap.Firms[n]; ok || !have.Enabled || snap.Held[n] {
			continue
		}
		f := have
		f.Enabled = false
		p.item(ActionDisabled, ObjFirm, n, "firm missing from the CWA snapshot: disabled, not deleted")
		p.firms = append(p.firms, &f)
	}

	// Offices.
	for _, c := range sortedKeys(snap.Offices) {
		want := snap.Offices[c]
		have, exists := cur.offices[c]
		if exists {
			what := diffOffice(have, want)
			if len(what) == 0 {
				continue
			}
			p.item(ActionUpdated, ObjOffice, c, strings.Join(what, "; "))
		} else {
			p.item(ActionCreated, ObjOffice, c, "new in the CWA snapshot (firm "+want.FirmNumber+")")
		}
		o := want
		p.offices = append(p.offices, &o)
	}
	for _, c := range sortedKeys(cur.offices) {
		have := cur.offices[c]
		if _, ok := snap.Offices[c]; ok || !have.Active || snap.Held[have.FirmNumber] || snap.HeldOffices[c] {
			continue
		}
		o := have
		o.Active = false
		p.item(ActionDisabled, ObjOffice, c, "office missing from the CWA snapshot: inactive, its user links removed")
		p.offices = append(p.offices, &o)
	}

	// Legacy logins: what CWA lists now, then the ones it no longer lists.
	loginKeys := sortedKeys(logins)
	for _, key := range loginKeys {
		l := logins[key]
		want := directory.LegacyLogin{Login: key, FirmNumber: l.firm, Email: l.user.Email,
			GivenName: strings.TrimSpace(l.user.FirstName), FamilyName: strings.TrimSpace(l.user.LastName),
			OfficeCodes: l.codes, UserID: l.userID}
		if len(l.reject) > 0 {
			p.item(ActionRejected, ObjLegacyLogin, key, "office codes left out: "+strings.Join(l.reject, "; "))
		}
		have, exists := cur.logins[key]
		if l.userID == "" {
			p.count(ActionUnmatched, 1)
			if !exists || have.UserID != "" {
				p.report.Items = append(p.report.Items, directory.RunItem{Action: ActionUnmatched, ObjectType: ObjLegacyLogin, ObjectID: key, Reason: l.noUser})
			}
		}
		if exists {
			what := diffLogin(have, want)
			if len(what) > 0 {
				p.item(ActionUpdated, ObjLegacyLogin, key, strings.Join(what, "; "))
				p.putLogin(want)
			}
		} else {
			p.item(ActionCreated, ObjLegacyLogin, key, "new legacy login of firm "+l.firm)
			p.putLogin(want)
		}
	}
	for _, key := range sortedKeys(cur.logins) {
		if _, ok := logins[key]; ok {
			continue
		}
		have := cur.logins[key]
		if have.UserID == "" && len(have.OfficeCodes) == 0 {
			continue // already gone
		}
		if snap.Held[have.FirmNumber] {
			continue // its firm's rows were rejected: not read, kept as it is
		}
		want := have
		want.UserID, want.OfficeCodes = "", nil
		p.item(ActionGone, ObjLegacyLogin, key, "no longer listed by CWA (firm "+have.FirmNumber+"): office codes and user link removed")
		p.putLogin(want)
	}

	// Links: one per linked login, source "cwa", key = login.
	for _, key := range loginKeys {
		uid := logins[key].userID
		have, exists := cur.links[key]
		if uid == "" || (exists && have.UserID == uid && have.GoneAt == nil) {
			continue
		}
		p.item(ActionLinked, ObjLegacyLogin, key, "linked by e-mail "+logins[key].user.Email+" to user "+uid)
		p.links = append(p.links, directory.SourceLink{UserID: uid, Source: Source, Key: key, LastSeenAt: now})
	}
	for _, key := range sortedKeys(cur.links) {
		have := cur.links[key]
		if have.GoneAt != nil {
			continue
		}
		if l, ok := logins[key]; ok && l.userID == have.UserID {
			continue
		}
		if l, ok := logins[key]; ok && l.userID != "" {
			continue // re-linked to another user above
		}
		if _, ok := logins[key]; !ok && snap.Held[cur.logins[key].FirmNumber] {
			continue // its firm's rows were rejected: not read, kept as it is
		}
		reason := "legacy login no longer listed by CWA"
		if l, ok := logins[key]; ok {
			reason = l.noUser
		}
		p.item(ActionUnlinked, ObjLegacyLogin, key, "link to user "+have.UserID+" marked gone: "+reason)
		p.op(func(ctx context.Context, tx store.Tx) error {
			if err := tx.MarkLinkGone(ctx, Source, key); err != nil {
				return fmt.Errorf("cwasync: unlink login %s: %w", key, err)
			}
			return nil
		})
	}
	return p
}

func (p *plan) putLogin(l directory.LegacyLogin) { p.logins = append(p.logins, &l) }

func diffFirm(have, want directory.Firm) []string {
	var d []string
	if have.Name != want.Name {
		d = append(d, fmt.Sprintf("name %q → %q", have.Name, want.Name))
	}
	if have.Type != want.Type {
		d = append(d, fmt.Sprintf("type %s → %s", have.Type, want.Type))
	}
	if have.ParentNumber != want.ParentNumber {
		d = append(d, fmt.Sprintf("parent %q → %q", have.ParentNumber, want.ParentNumber))
	}
	if !have.Enabled && want.Enabled {
		d = append(d, "enabled again: back in the CWA snapshot")
	}
	return d
}

func diffOffice(have, want directory.Office) []string {
	var d []string
	if have.FirmNumber != want.FirmNumber {
		d = append(d, fmt.Sprintf("moved from firm %s to firm %s: its user links in firm %s are removed", have.FirmNumber, want.FirmNumber, have.FirmNumber))
	}
	if !slices.Equal(have.Address, want.Address) || have.City != want.City || have.Postcode != want.Postcode {
		d = append(d, "address changed")
	}
	if !have.Active && want.Active {
		d = append(d, "active again: back in the CWA snapshot")
	}
	return d
}

func diffLogin(have, want directory.LegacyLogin) []string {
	var d []string
	if have.FirmNumber != want.FirmNumber {
		d = append(d, fmt.Sprintf("firm %s → %s", have.FirmNumber, want.FirmNumber))
	}
	if have.Email != want.Email || have.GivenName != want.GivenName || have.FamilyName != want.FamilyName {
		d = append(d, "name or e-mail changed")
	}
	if !slices.Equal(have.OfficeCodes, want.OfficeCodes) {
		var gone, added []string
		for _, c := range have.OfficeCodes {
			if !slices.Contains(want.OfficeCodes, c) {
				gone = append(gone, c)
			}
		}
		for _, c := range want.OfficeCodes {
			if !slices.Contains(have.OfficeCodes, c) {
				added = append(added, c)
			}
		}
		if len(added) > 0 {
			d = append(d, "office codes added: "+strings.Join(added, ","))
		}
		if len(gone) > 0 {
			d = append(d, "office codes removed: "+strings.Join(gone, ","))
		}
	}
	if have.UserID != want.UserID {
		switch {
		case want.UserID == "":
			d = append(d, "user link removed")
		case have.UserID == "":
			d = append(d, "linked to user "+want.UserID)
		default:
			d = append(d, "relinked from user "+have.UserID+" to "+want.UserID)
		}
	}
	return d
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// forEach calls fn(ctx, i) for every i in [0, n) on conc workers and
// returns the first error, cancelling the ctx the others see. A fixed set
// of workers, not a goroutine per call: a sync makes ~55,000 calls, and a
// fresh goroutine grows its stack through the HTTP client on every one.
func forEach(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < max(1, min(conc, n)); w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || gctx.Err() != nil {
					return gctx.Err()
				}
				if err := fn(gctx, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
