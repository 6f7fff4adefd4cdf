package ldaptarget_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/internal/testenv"
	"github.com/dirsyncd/dirsyncd/mapping"
	"github.com/dirsyncd/dirsyncd/reconcile"
	"github.com/dirsyncd/dirsyncd/reconcile/ldaptarget"
	"github.com/dirsyncd/dirsyncd/store"
	"github.com/dirsyncd/dirsyncd/store/sqlite"
)

const (
	alice = "uid=alice,ou=people,dc=example,dc=org"
	bob   = "uid=bob,ou=people,dc=example,dc=org"
	ou    = "ou=roles,dc=example,dc=org"
)

const fixture = `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=roles,dc=example,dc=org
objectClass: organizationalUnit
ou: roles

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
`

func TestRoleGroupsAgainstSlapd(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Slapd(t, testenv.SlapdOptions{LDIF: fixture})
	dir := ldaptarget.New(ldaptarget.Options{URL: srv.URL(), BindDN: srv.BindDN(), Password: srv.Password()})

	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "d.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	rule := []directory.Provenance{{Kind: directory.ProvRule, Ref: "r"}}
	update := func(fn func(ctx context.Context, tx store.Tx) error) {
		t.Helper()
		if err := s.Update(ctx, audit.Meta{Actor: "test"}, fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(ctx context.Context, tx store.Tx) error {
		if err := tx.PutFirm(ctx, &directory.Firm{Number: "3856", Type: directory.FirmLegalServicesProvider, Enabled: true}); err != nil {
			return err
		}
		for name, dn := range map[string]string{"alice": alice, "bob": bob, "carol": ""} {
			u := &directory.User{UserName: name, Active: true}
			if err := tx.CreateUser(ctx, u); err != nil {
				return err
			}
			ids[name] = u.ID
			if dn != "" {
				if err := tx.PutLink(ctx, directory.SourceLink{UserID: u.ID, Source: "ldap:corp", Key: name, DN: dn}); err != nil {
					return err
				}
			}
			if err := tx.PutGrant(ctx, &directory.Grant{UserID: u.ID, FirmNumber: "3856", Service: "crime-apply", Role: "access", AllOffices: true, Provenance: rule}); err != nil {
				return err
			}
		}
		return tx.PutGrant(ctx, &directory.Grant{UserID: ids["bob"], FirmNumber: "3856", Service: "ccms", Role: "case-management", AllOffices: true, Provenance: rule})
	})
	cat, err := mapping.LoadCatalogue(filepath.Join("..", "..", "configs", "catalogue.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	opts := reconcile.RoleGroupsOptions{Source: "ldap:corp", Template: "cn={service}-{role},{ou}", OU: ou, Correct: true}
	rg := reconcile.NewRoleGroups(s, cat, dir, opts)
	crime, ccms := "cn=crime-apply-access,"+ou, "cn=ccms-case-management,"+ou
	members := func(dn string) []string {
		t.Helper()
		m, err := dir.Members(ctx, dn)
		if err != nil {
			t.Fatalf("members of %s: %v", dn, err)
		}
		slices.Sort(m)
		return m
	}

	changes, err := rg.Sync(ctx, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || !changes[0].Created || !changes[1].Created {
		t.Fatalf("first sync %+v", changes)
	}
	if got := members(crime); !slices.Equal(got, []string{alice, bob}) {
		t.Errorf("crime group %v (carol has no LDAP DN)", got)
	}
	if got := members(ccms); !slices.Equal(got, []string{bob}) {
		t.Errorf("ccms group %v", got)
	}
	if changes, err := rg.Sync(ctx, "run-2"); err != nil || len(changes) != 0 {
		t.Fatalf("second sync not a no-op: %+v %v", changes, err)
	}

	// out of band: someone adds a stranger and removes bob
	srv.Modify("dn: " + crime + "\nchangetype: modify\nadd: member\nmember: uid=mallory,ou=people,dc=example,dc=org\n-\ndelete: member\nmember: " + bob + "\n")
	changes, err = rg.Sync(ctx, "run-3")
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || !changes[0].Drift || !changes[0].Fixed || len(changes[0].Added) != 1 || len(changes[0].Removed) != 1 {
		t.Fatalf("drift not detected and corrected: %+v", changes)
	}
	if got := members(crime); !slices.Equal(got, []string{alice, bob}) {
		t.Errorf("after correction %v", got)
	}
	var drift int
	_ = s.Audit(ctx, store.AuditFilter{Action: "rolegroup.drift"}, func(e audit.Event) error { drift++; return nil })
	if drift != 1 {
		t.Errorf("%d drift audit events", drift)
	}

	// a grant change is an update, not drift; the emptied group keeps a placeholder
	update(func(ctx context.Context, tx store.Tx) error {
		return tx.DeleteGrant(ctx, directory.GrantKey{UserID: ids["bob"], FirmNumber: "3856", Service: "ccms", Role: "case-management"})
	})
	changes, err = rg.Sync(ctx, "run-4")
	if err != nil || len(changes) != 1 || changes[0].Drift || !slices.Equal(changes[0].Removed, []string{bob}) {
		t.Fatalf("grant revoked: %+v %v", changes, err)
	}
	if got := members(ccms); len(got) != 0 {
		t.Errorf("emptied group still lists %v", got)
	}

	// report-only mode leaves a drifted group alone
	srv.Modify("dn: " + crime + "\nchangetype: modify\ndelete: member\nmember: " + alice + "\n")
	opts.Correct = false
	changes, err = reconcile.NewRoleGroups(s, cat, dir, opts).Sync(ctx, "run-5")
	if err != nil || len(changes) != 1 || !changes[0].Drift || changes[0].Fixed {
		t.Fatalf("report-only drift: %+v %v", changes, err)
	}
	if got := members(crime); !slices.Equal(got, []string{bob}) {
		t.Errorf("report-only mode changed the group: %v", got)
	}
}
