package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// FeedStore is what the change feed reads.
type FeedStore interface {
	Audit(ctx context.Context, f store.AuditFilter, fn func(audit.Event) error) error
	LastAuditSeq(ctx context.Context) (int64, error)
	ListGroupMembers(ctx context.Context, groupID, after string, limit int) ([]string, error)
	ListGroupChildren(ctx context.Context, groupID string) ([]string, error)
	ListFirmUserIDs(ctx context.Context, firmNumber string) ([]string, error)
}

var _ FeedStore = store.Store(nil)

// Enqueuer takes the users to reconcile; *Worker is one.
type Enqueuer interface {
	Enqueue(ctx context.Context, userIDs ...string)
}

var _ Enqueuer = (*Worker)(nil)

// FeedOptions configure a Feed.
type FeedOptions struct {
	Interval time.Duration // between polls (default 2s)
	Batch    int           // audit events read per poll (default 1000)
	// FullThreshold: a poll that affects more users than this (a big sync)
	// asks for one full reconcile instead of enqueuing them (default 5000).
	FullThreshold int
	// SkipActors are actors whose changes are not followed (default
	// "reconcile": its own grant writes).
	SkipActors []string
	// RequestFull is called (from the feed's goroutine) when a full
	// reconcile is needed: a big change, or a group deleted (whose former
	// members the log does not list). When nil, nothing is requested and
	// the scheduled full reconcile catches up.
	RequestFull func(ctx context.Context) error
	Clock       Clock
	Logger      *zap.Logger
}

// Feed follows the audit log, which records every change every source
// (SCIM, LDAP, CWA, admins) makes in the same transaction as the change, and
// enqueues the users each change affects: a user's own record, links and
// firm memberships; group memberships; legacy logins; manual grants; every
// member (transitively) of a group renamed, re-parented or nested; every
// user of a firm whose firm or office record changed. The log is the one
// place every writer goes through, so no source can forget to notify. It
// starts at the log's head: what happened before is the scheduled full
// reconcile's job.
type Feed struct {
	s     FeedStore
	q     Enqueuer
	o     FeedOptions
	log   *zap.Logger
	after int64
}

// NewFeed returns a feed that enqueues into q.
func NewFeed(s FeedStore, q Enqueuer, o FeedOptions) *Feed {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.FullThreshold <= 0 {
		o.FullThreshold = 5000
	}
	if o.SkipActors == nil {
		o.SkipActors = []string{audit.ActorReconcile}
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Feed{s: s, q: q, o: o, log: o.Logger.Named("reconcile")}
}

// Start positions the feed at the log's current head.
func (f *Feed) Start(ctx context.Context) error {
	seq, err := f.s.LastAuditSeq(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: feed start: %w", err)
	}
	f.after = seq
	return nil
}

// Run polls until ctx ends. A failed poll is retried at the next tick from
// the same position: nothing is skipped.
//
// Positioning at the head is retried the same way: a store that is briefly
// unreachable at start must not stop the daemon, and a context ended
// during start (shutdown right after start) is a clean stop.
func (f *Feed) Run(ctx context.Context) error {
	for {
		err := f.Start(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		f.log.Warn("change feed start failed; retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil
		case <-f.o.Clock.After(f.o.Interval):
		}
	}
	for {
		for {
			n, err := f.Poll(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				f.log.Warn("change feed poll failed; retrying", zap.Int64("after_seq", f.after), zap.Error(err))
				break
			}
			if n < f.o.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-f.o.Clock.After(f.o.Interval):
		}
	}
}

// FeedResult is what one poll saw.
type FeedResult struct {
	Events int
	Users  []string // enqueued, sorted
	Full   bool     // a full reconcile was requested
}

// Poll reads the next batch of events, enqueues the users they affect and
// advances past them; it returns how many events it read.
func (f *Feed) Poll(ctx context.Context) (int, error) {
	r, err := f.PollResult(ctx)
	return r.Events, err
}

// PollResult is Poll, saying what it did.
func (f *Feed) PollResult(ctx context.Context) (FeedResult, error) {
	var res FeedResult
	var events []audit.Event
	err := f.s.Audit(ctx, store.AuditFilter{AfterSeq: f.after, Limit: f.o.Batch}, func(e audit.Event) error {
		events = append(events, e)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("reconcile: feed: read audit after %d: %w", f.after, err)
	}
	users := map[string]bool{}
	full := false
	for _, e := range events {
		if f.skip(e.Actor) {
			continue
		}
		more, needFull, err := f.affected(ctx, e)
		if err != nil {
			return res, err
		}
		full = full || needFull
		for _, u := range more {
			users[u] = true
		}
	}
	res.Events = len(events)
	if len(users) > f.o.FullThreshold {
		full = true
	}
	if full && f.o.RequestFull != nil {
		if err := f.o.RequestFull(ctx); err != nil {
			return res, fmt.Errorf("reconcile: feed: request full reconcile: %w", err)
		}
		res.Full = true
	}
	if !res.Full {
		for u := range users {
			res.Users = append(res.Users, u)
		}
		sort.Strings(res.Users)
		if len(res.Users) > 0 {
			f.q.Enqueue(ctx, res.Users...)
		}
	}
	if len(events) > 0 {
		f.after = events[len(events)-1].Seq
	}
	return res, nil
}

func (f *Feed) skip(actor string) bool {
	for _, a := range f.o.SkipActors {
		if actor == a {
			return true
		}
	}
	return false
}

// affected maps one event to the users whose facts it changed.
func (f *Feed) affected(ctx context.Context, e audit.Event) ([]string, bool, error) {
	switch e.ObjectType {
	case "user", "grant": // user.*, link.*, firm_membership.*: object id is the user
		return []string{e.ObjectID}, false, nil
	case "legacy_login":
		return jsonFields(e, "userId"), false, nil
	case "group":
		switch e.Action {
		case "group.member.add", "group.member.remove":
			return jsonFields(e, "userId"), false, nil
		case "group.delete":
			return nil, true, nil // its members are gone from the store: only a full pass knows who
		case "group.child.add", "group.child.remove":
			var out []string
			for _, child := range jsonFields(e, "childId") {
				us, err := f.members(ctx, child)
				if err != nil {
					return nil, false, err
				}
				out = append(out, us...)
			}
			return out, false, nil
		case "group.create":
			return nil, false, nil // no members yet
		}
		us, err := f.members(ctx, e.ObjectID) // renamed, DN changed, ...
		return us, false, err
	case "firm", "office":
		firms := jsonFields(e, "firmNumber")
		if e.ObjectType == "firm" {
			firms = append(firms, e.ObjectID)
		}
		var out []string
		for _, fn := range dedupe(firms) {
			us, err := f.s.ListFirmUserIDs(ctx, fn)
			if err != nil {
				return nil, false, fmt.Errorf("reconcile: feed: users of firm %s: %w", fn, err)
			}
			out = append(out, us...)
		}
		return out, false, nil
	}
	return nil, false, nil
}

// members returns the members of group id and of every group nested in it.
func (f *Feed) members(ctx context.Context, id string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 {
		g := queue[0]
		queue = queue[1:]
		if seen[g] {
			continue
		}
		seen[g] = true
		after := ""
		for {
			ids, err := f.s.ListGroupMembers(ctx, g, after, pageSize)
			if err != nil {
				return nil, fmt.Errorf("reconcile: feed: members of group %s: %w", g, err)
			}
			out = append(out, ids...)
			if len(ids) < pageSize {
				break
			}
			after = ids[len(ids)-1]
		}
		children, err := f.s.ListGroupChildren(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("reconcile: feed: children of group %s: %w", g, err)
		}
		queue = append(queue, children...)
	}
	return out, nil
}

// jsonFields returns the string values of key in the event's before and
// after objects (non-empty, unique).
func jsonFields(e audit.Event, key string) []string {
	var out []string
	for _, raw := range []json.RawMessage{e.Before, e.After} {
		if len(raw) == 0 {
			continue
		}
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		if v, ok := m[key].(string); ok && strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	return dedupe(out)
}

func dedupe(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
