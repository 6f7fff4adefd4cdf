package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/store"
)

// The CCMS outbox is transactional: when an applied batch changes a user's
// roles that carry CCMS responsibility codes, the message is written as an
// audit event (action ccms.enqueue) in the same transaction as the grants.
// Outbox.Deliver tails those events after its cursor and POSTs each message
// with its de-duplication key, retrying; per-user delivery flags and the set
// of failed users live in store cursors.
const (
	actionCCMSEnqueue = "ccms.enqueue"
	cursorOutbox      = "outbox:ccms"
	cursorFailed      = "outbox:ccms:failed"
)

// CCMSMessage is DOMAIN.md's downstream message for one user in one firm.
type CCMSMessage struct {
	UserName          string   `json:"userName"`
	VendorNumber      string   `json:"vendorNumber"` // firm number
	FirstName         string   `json:"firstName"`
	LastName          string   `json:"lastName"`
	EmailAddress      string   `json:"emailAddress"`
	ResponsibilityKey []string `json:"responsibilityKey"`
	UserID            string   `json:"-"`
	DedupKey          string   `json:"-"`
}

type outboxEvent struct {
	UserID  string      `json:"userId"`
	Message CCMSMessage `json:"message"`
}

// ccmsMessages computes, inside tx, the message of each (user, firm) whose
// CCMS-coded roles a batch changed.
func ccmsMessages(ctx context.Context, tx store.Tx, cat *mapping.Catalogue, batch []Change) ([]CCMSMessage, error) {
	type uf struct{ user, firm string }
	touched := map[uf]bool{}
	var order []uf
	for _, c := range batch {
		role, ok := cat.RoleOf(c.Service, c.Role)
		if !ok || role.CCMSCode == "" || c.Action == ActUpdate {
			continue
		}
		k := uf{c.UserID, c.Firm}
		if !touched[k] {
			touched[k] = true
			order = append(order, k)
		}
	}
	var out []CCMSMessage
	for _, k := range order {
		u, err := tx.GetUser(ctx, k.user)
		if err != nil {
			return nil, fmt.Errorf("reconcile: outbox: get user %s: %w", k.user, err)
		}
		gs, err := tx.ListGrants(ctx, store.GrantQuery{UserID: k.user, FirmNumber: k.firm})
		if err != nil {
			return nil, fmt.Errorf("reconcile: outbox: grants of %s: %w", k.user, err)
		}
		out = append(out, buildMessage(cat, u, k.firm, gs))
	}
	return out, nil
}

func buildMessage(cat *mapping.Catalogue, u directory.User, firm string, gs []directory.Grant) CCMSMessage {
	codes := []string{}
	for _, g := range gs {
		if role, ok := cat.RoleOf(g.Service, g.Role); ok && role.CCMSCode != "" && g.FirmNumber == firm {
			codes = append(codes, role.CCMSCode)
		}
	}
	sort.Strings(codes)
	return CCMSMessage{UserName: u.UserName, VendorNumber: firm, FirstName: u.GivenName, LastName: u.FamilyName,
		EmailAddress: u.Email, ResponsibilityKey: slices.Compact(codes), UserID: u.ID}
}

func recordMessages(ctx context.Context, tx store.Tx, msgs []CCMSMessage) error {
	for _, m := range msgs {
		if err := tx.Record(ctx, actionCCMSEnqueue, "ccms-message", m.UserID, nil, outboxEvent{UserID: m.UserID, Message: m}); err != nil {
			return fmt.Errorf("reconcile: outbox: record message for %s: %w", m.UserID, err)
		}
	}
	return nil
}

// OutboxStore is what the outbox needs from the store.
type OutboxStore interface {
	Update(ctx context.Context, m audit.Meta, fn func(ctx context.Context, tx store.Tx) error) error
	Audit(ctx context.Context, f store.AuditFilter, fn func(audit.Event) error) error
	GetCursor(ctx context.Context, source string) (string, error)
	GetUser(ctx context.Context, id string) (directory.User, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]directory.Grant, error)
}

// OutboxOptions configure delivery.
type OutboxOptions struct {
	Endpoint    string
	Token       string // bearer token; never logged
	Client      *http.Client
	MaxAttempts int
	Backoff     time.Duration                        // first retry delay, doubled per attempt
	After       func(time.Duration) <-chan time.Time // injected in tests
	Logger      *zap.Logger
}

// Outbox delivers CCMS messages.
type Outbox struct {
	s   OutboxStore
	cat *mapping.Catalogue
	o   OutboxOptions
	log *zap.Logger
}

// NewOutbox returns an Outbox.
func NewOutbox(s OutboxStore, cat *mapping.Catalogue, o OutboxOptions) *Outbox {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Outbox{s: s, cat: cat, o: o, log: o.Logger.Named("reconcile")}
}

// Deliver sends every message enqueued since the last call, in order. A
// message that still fails after MaxAttempts marks its user failed (for
// Resend) and does not block the ones after it.
func (ob *Outbox) Deliver(ctx context.Context) (sent, failed int, err error) {
	var after int64
	if v, err := ob.s.GetCursor(ctx, cursorOutbox); err == nil {
		fmt.Sscan(v, &after)
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, 0, fmt.Errorf("reconcile: outbox: read cursor: %w", err)
	}
	var events []audit.Event
	if err := ob.s.Audit(ctx, store.AuditFilter{Action: actionCCMSEnqueue, AfterSeq: after}, func(e audit.Event) error {
		events = append(events, e)
		return nil
	}); err != nil {
		return 0, 0, fmt.Errorf("reconcile: outbox: read messages: %w", err)
	}
	for _, e := range events {
		var ev outboxEvent
		if err := json.Unmarshal(e.After, &ev); err != nil {
			return sent, failed, fmt.Errorf("reconcile: outbox: decode message %d: %w", e.Seq, err)
		}
		ev.Message.UserID, ev.Message.DedupKey = ev.UserID, e.Hash
		derr := ob.send(ctx, ev.Message)
		if ctx.Err() != nil {
			return sent, failed, ctx.Err()
		}
		if derr == nil {
			sent++
		} else {
			failed++
			ob.log.Warn("ccms message not delivered", zap.String("user_id", ev.UserID), zap.Int64("seq", e.Seq), zap.Error(derr))
		}
		if err := ob.mark(ctx, ev.UserID, derr == nil, fmt.Sprint(e.Seq)); err != nil {
			return sent, failed, err
		}
	}
	return sent, failed, nil
}

// Resend sends a fresh message (current roles) for every user whose last
// delivery failed.
func (ob *Outbox) Resend(ctx context.Context) (sent, failed int, err error) {
	users, err := failedUsers(ctx, ob.s)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range users {
		u, err := ob.s.GetUser(ctx, id)
		if err != nil {
			return sent, failed, fmt.Errorf("reconcile: outbox: get user %s: %w", id, err)
		}
		gs, err := ob.s.ListGrants(ctx, store.GrantQuery{UserID: id})
		if err != nil {
			return sent, failed, fmt.Errorf("reconcile: outbox: grants of %s: %w", id, err)
		}
		firms := []string{u.FirmNumber}
		for _, g := range gs {
			firms = append(firms, g.FirmNumber)
		}
		sort.Strings(firms)
		ok := true
		for _, f := range slices.Compact(firms) {
			if f == "" {
				continue
			}
			m := buildMessage(ob.cat, u, f, gs)
			m.DedupKey = "resend:" + id + ":" + f + ":" + fmt.Sprint(len(m.ResponsibilityKey))
			if err := ob.send(ctx, m); err != nil {
				ok = false
			}
		}
		if ok {
			sent++
		} else {
			failed++
		}
		if err := ob.mark(ctx, id, ok, ""); err != nil {
			return sent, failed, err
		}
	}
	return sent, failed, nil
}

// LastDeliveryOK reports a user's "last sync successful" flag (true when
// nothing was ever sent).
func (ob *Outbox) LastDeliveryOK(ctx context.Context, userID string) (bool, error) {
	v, err := ob.s.GetCursor(ctx, "outbox:ccms:user:"+userID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	return v == "ok", err
}

func failedUsers(ctx context.Context, rd interface {
	GetCursor(ctx context.Context, source string) (string, error)
}) ([]string, error) {
	v, err := rd.GetCursor(ctx, cursorFailed)
	if errors.Is(err, store.ErrNotFound) || v == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reconcile: outbox: read failed users: %w", err)
	}
	var ids []string
	if err := json.Unmarshal([]byte(v), &ids); err != nil {
		return nil, fmt.Errorf("reconcile: outbox: decode failed users: %w", err)
	}
	return ids, nil
}

// mark records a delivery outcome: the user's flag, the failed set and
// (when seq is set) the outbox cursor, in one transaction.
func (ob *Outbox) mark(ctx context.Context, userID string, ok bool, seq string) error {
	return ob.s.Update(ctx, audit.Meta{Actor: audit.ActorReconcile}, func(ctx context.Context, tx store.Tx) error {
		flag := "ok"
		if !ok {
			flag = "failed"
		}
		if err := tx.SetCursor(ctx, "outbox:ccms:user:"+userID, flag); err != nil {
			return err
		}
		ids, err := failedUsers(ctx, tx)
		if err != nil {
			return err
		}
		i := slices.Index(ids, userID)
		switch {
		case !ok && i < 0:
			ids = append(ids, userID)
		case ok && i >= 0:
			ids = slices.Delete(ids, i, i+1)
		}
		b, _ := json.Marshal(ids)
		if err := tx.SetCursor(ctx, cursorFailed, string(b)); err != nil {
			return err
		}
		if seq != "" {
			return tx.SetCursor(ctx, cursorOutbox, seq)
		}
		return nil
	})
}

// send POSTs m with retries and exponential backoff; 2xx is success, 4xx
// other than 429 fails at once.
func (ob *Outbox) send(ctx context.Context, m CCMSMessage) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	delay := ob.o.Backoff
	var last error
	for attempt := 1; attempt <= ob.o.MaxAttempts; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ob.o.After(delay):
			}
			delay *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ob.o.Endpoint, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("reconcile: outbox: request: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", m.DedupKey)
		if ob.o.Token != "" {
			req.Header.Set("Authorization", "Bearer "+ob.o.Token)
		}
		resp, err := ob.o.Client.Do(req)
		if err != nil {
			last = fmt.Errorf("reconcile: outbox: post: %w", err)
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
			return fmt.Errorf("reconcile: outbox: endpoint refused the message: %s", resp.Status)
		}
		last = fmt.Errorf("reconcile: outbox: endpoint answered %s", resp.Status)
	}
	return last
}
