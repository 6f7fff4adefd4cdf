package storetest

import (
	"context"
	"slices"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// cwaBulkTx is the bulk form of the CWA sync's writes (cwasync.BulkTx and
// cwasync.BulkLinkTx); it is optional for a backend (the sync falls back to
// the single puts), but where it exists it must behave like them.
type cwaBulkTx interface {
	PutFirms(ctx context.Context, fs []*directory.Firm) (int, error)
	PutOffices(ctx context.Context, os []*directory.Office) (int, error)
	PutLegacyLogins(ctx context.Context, ls []*directory.LegacyLogin) (int, error)
	PutLinks(ctx context.Context, ls []directory.SourceLink) (int, error)
}

// testCWABulkPuts: one call mixing new, unchanged and changed rows writes
// the new and changed ones (versions as the single puts set them), records
// one event per changed row and none for unchanged rows, keeps the audit
// chain valid; a key given twice fails and rolls the transaction back.
func testCWABulkPuts(e *env) {
	t := e.t
	var bulk bool
	e.mustUpdate(func(tx store.Tx) error { _, bulk = tx.(cwaBulkTx); return nil })
	if !bulk {
		t.Skip("backend has no bulk CWA puts (optional: cwasync writes one by one)")
	}
	u := e.createUser(user("alice", "alice@example.test"))
	f1 := directory.Firm{Number: "3856", Name: "Smith & Co", Type: directory.FirmLegalServicesProvider, Enabled: true}
	o1 := directory.Office{Code: "0Q731M", FirmNumber: "3856", City: "Leeds", Active: true}
	l1 := directory.LegacyLogin{Login: "JSMITH", FirmNumber: "3856", Email: "j@smith.example", OfficeCodes: []string{"0Q731M"}}
	e.mustUpdate(func(tx store.Tx) error {
		if err := tx.PutFirm(e.ctx, &f1); err != nil {
			return err
		}
		if err := tx.PutOffice(e.ctx, &o1); err != nil {
			return err
		}
		if err := tx.PutLegacyLogin(e.ctx, &l1); err != nil {
			return err
		}
		return tx.PutLink(e.ctx, directory.SourceLink{UserID: u.ID, Source: "cwa", Key: "JSMITH"})
	})
	before := len(e.events())

	e.clock.Advance(1000000000)
	f1same, f2 := f1, directory.Firm{Number: "7001", Name: "Gray's Chambers", Type: directory.FirmChambers, Enabled: true}
	o1moved, o2 := o1, directory.Office{Code: "7C001A", FirmNumber: "7001", Address: []string{"2 Gray's Inn Sq"}, Active: true}
	o1moved.City = "York"
	l1same, l2 := l1, directory.LegacyLogin{Login: "AHART", FirmNumber: "7001", Email: "a@gray.example", GivenName: "Amelia",
		OfficeCodes: []string{"7C001A", "7C001A"}, UserID: u.ID}
	var nf, no, nl, nk int
	e.mustUpdate(func(tx store.Tx) error {
		b := tx.(cwaBulkTx)
		var err error
		if nf, err = b.PutFirms(e.ctx, []*directory.Firm{&f1same, &f2}); err != nil {
			return err
		}
		if no, err = b.PutOffices(e.ctx, []*directory.Office{&o1moved, &o2}); err != nil {
			return err
		}
		if nl, err = b.PutLegacyLogins(e.ctx, []*directory.LegacyLogin{&l1same, &l2}); err != nil {
			return err
		}
		nk, err = b.PutLinks(e.ctx, []directory.SourceLink{
			{UserID: u.ID, Source: "cwa", Key: "JSMITH"}, // unchanged: last seen only
			{UserID: u.ID, Source: "cwa", Key: "AHART"},  // new
		})
		return err
	})
	if nf != 1 || no != 2 || nl != 1 || nk != 1 {
		t.Errorf("changed firms %d, offices %d, logins %d, links %d; want 1, 2, 1, 1", nf, no, nl, nk)
	}
	evs := e.events()[before:]
	var acts []string
	for _, ev := range evs {
		acts = append(acts, ev.Action+" "+ev.ObjectID)
	}
	want := []string{"firm.put 7001", "office.put 0Q731M", "office.put 7C001A", "legacy_login.put AHART", "link.put " + u.ID}
	if !slices.Equal(acts, want) {
		t.Errorf("events %q, want %q", acts, want)
	}
	for _, ev := range evs {
		if ev.Actor != meta.Actor || ev.RunID != meta.RunID {
			t.Errorf("event %s without the update's meta: %+v", ev.Action, ev)
		}
		if ev.ObjectID == "0Q731M" && len(ev.Before) == 0 {
			t.Error("the changed office's event has no before")
		}
	}
	if g, err := e.s.GetFirm(e.ctx, "3856"); err != nil || g.Version != 1 {
		t.Errorf("unchanged firm = %+v %v, want version 1", g, err)
	}
	if g, err := e.s.GetFirm(e.ctx, "7001"); err != nil || g != f2 || g.Version != 1 {
		t.Errorf("new firm = %+v %v, want %+v", g, err, f2)
	}
	if g, err := e.s.GetOffice(e.ctx, "0Q731M"); err != nil || g.City != "York" || g.Version != 2 {
		t.Errorf("changed office = %+v %v, want York, version 2", g, err)
	}
	if g, err := e.s.GetOffice(e.ctx, "7C001A"); err != nil || !slices.Equal(g.Address, o2.Address) || !g.Active || g.Version != 1 {
		t.Errorf("new office = %+v %v", g, err)
	}
	if g, err := e.s.GetLegacyLogin(e.ctx, "AHART"); err != nil || !slices.Equal(g.OfficeCodes, []string{"7C001A"}) ||
		g.UserID != u.ID || g.GivenName != "Amelia" || g.Version != 1 {
		t.Errorf("new login = %+v %v (office codes de-duplicated, user kept)", g, err)
	}
	if g, err := e.s.GetLegacyLogin(e.ctx, "JSMITH"); err != nil || g.Version != 1 {
		t.Errorf("unchanged login = %+v %v", g, err)
	}
	if got, err := e.s.FindUserByLink(e.ctx, "cwa", "AHART"); err != nil || got.ID != u.ID {
		t.Errorf("new link: %v %v", got.ID, err)
	}
	if v, err := e.s.VerifyAudit(e.ctx); err != nil || !v.OK() {
		t.Errorf("VerifyAudit = %+v %v", v, err)
	}

	// A key given twice: an error, and nothing of the transaction is kept.
	n := len(e.events())
	f3 := directory.Firm{Number: "9000", Name: "New", Type: directory.FirmChambers, Enabled: true}
	dup := f2
	err := e.update(func(tx store.Tx) error {
		b := tx.(cwaBulkTx)
		if _, err := b.PutFirms(e.ctx, []*directory.Firm{&f3}); err != nil {
			return err
		}
		_, err := b.PutFirms(e.ctx, []*directory.Firm{&dup, &dup})
		return err
	})
	if err == nil {
		t.Fatal("PutFirms with a key given twice succeeded")
	}
	if _, err := e.s.GetFirm(e.ctx, "9000"); err == nil || len(e.events()) != n {
		t.Errorf("failed bulk transaction kept firm 9000 (%v) or events (%d new)", err, len(e.events())-n)
	}
	err = e.update(func(tx store.Tx) error {
		_, err := tx.(cwaBulkTx).PutLinks(e.ctx, []directory.SourceLink{{UserID: u.ID, Source: "cwa", Key: "X"}, {UserID: u.ID, Source: "cwa", Key: "X"}})
		return err
	})
	if err == nil {
		t.Error("PutLinks with a key given twice succeeded")
	}
	err = e.update(func(tx store.Tx) error {
		_, err := tx.(cwaBulkTx).PutLinks(e.ctx, []directory.SourceLink{{UserID: "no-such-user", Source: "cwa", Key: "Y"}})
		return err
	})
	wantErr(t, err, store.ErrNotFound)
}
