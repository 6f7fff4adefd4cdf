package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

func TestCasesCommands(t *testing.T) {
	cfg, db := writeConfig(t, "caseAccess: {chambersDomains: [chambers.example.org]}\n")
	if r := run(t, "migrate", "--config", cfg); r.code != 0 {
		t.Fatalf("migrate: %+v", r)
	}
	st := openTestStore(t, db)
	err := st.Update(context.Background(), audit.Meta{Actor: "test"}, func(ctx context.Context, tx store.Tx) error {
		for _, n := range []string{"pat", "dan"} {
			if err := tx.CreateUser(ctx, &directory.User{UserName: n, Email: n + "@example.org", Active: true}); err != nil {
				return err
			}
		}
		return nil
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := []string{"--config", cfg, "--actor", "cli:tester"}
	if r := run(t, append([]string{"cases", "create", "--case", "T1", "--defendant", "Smith", "--owner", "pat"}, c...)...); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	r := run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate"}, c...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "defendants") {
		t.Fatalf("invite without defendants: %+v", r)
	}
	r = run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate", "--defendant", "Smith", "--expires", "2000-01-01T00:00:00Z"}, c...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "expiresAt") {
		t.Fatalf("invite with past expiry: %+v", r)
	}
	r = run(t, append([]string{"cases", "invite", "--case", "T1", "--user", "dan", "--inviter", "pat", "--role", "defence-advocate", "--defendant", "Smith", "--expires", "72h"}, c...)...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "invite ") {
		t.Fatalf("invite: %+v", r)
	}
	id := strings.TrimSuffix(strings.Fields(r.stdout)[1], ":")
	if r := run(t, append([]string{"cases", "list", "--case", "T1"}, c...)...); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "defence-advocate") {
		t.Fatalf("list: %+v", r)
	}
	if r := run(t, append([]string{"cases", "expire", "--case", "T1", "--invite", id, "--never"}, c...)...); r.code != 0 || !strings.Contains(r.stdout, "expires never") {
		t.Fatalf("expire: %+v", r)
	}
	r = run(t, append([]string{"cases", "access", "--case", "T1", "--user", "dan"}, c...)...)
	var d struct{ Allowed, FirstAccess bool }
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || r.code != 0 || !d.Allowed || !d.FirstAccess {
		t.Fatalf("access: %v %+v", err, r)
	}
	if r := run(t, append([]string{"cases", "revoke", "--case", "T1", "--invite", id}, c...)...); r.code != 0 || !strings.Contains(r.stdout, "revoked") {
		t.Fatalf("revoke: %+v", r)
	}
	if r := run(t, append([]string{"cases", "revoke", "--case", "NOPE", "--invite", id}, c...)...); r.code != 2 || !strings.Contains(r.stderr, "ref") {
		t.Fatalf("revoke on unknown case: %+v", r)
	}
	r = run(t, "audit", "list", "--config", cfg, "--actor", "cli:tester", "--json")
	var events []audit.Event
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil || r.code != 0 {
		t.Fatalf("audit list: %v %+v", err, r)
	}
	actions := map[string]bool{}
	for _, e := range events {
		actions[e.Action] = true
	}
	for _, a := range []string{"case.create", "case.invite.create", "case.invite.expiry", "case.invite.revoke", "case.access.first"} {
		if !actions[a] {
			t.Errorf("no %s event by cli:tester (have %v)", a, actions)
		}
	}
}
