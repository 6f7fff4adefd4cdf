package ldaptarget

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/reconcile"
)

// Options say how to reach the directory.
type Options struct {
	URL      string
	BindDN   string
	Password string
	Timeout  time.Duration // per request, default 10s
}

// Directory is a RoleGroupDirectory over one LDAP connection per call.
type Directory struct{ o Options }

var _ reconcile.RoleGroupDirectory = (*Directory)(nil)

// New returns a Directory.
func New(o Options) *Directory {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Directory{o: o}
}

// conn dials and binds; the connection closes when ctx ends.
func (d *Directory) conn(ctx context.Context) (*ldap.Conn, func(), error) {
	c, err := ldap.DialURL(d.o.URL, ldap.DialWithDialer(&net.Dialer{Timeout: d.o.Timeout}))
	if err != nil {
		return nil, nil, fmt.Errorf("ldaptarget: dial %s: %w", d.o.URL, err)
	}
	c.SetTimeout(d.o.Timeout)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	if err := c.Bind(d.o.BindDN, d.o.Password); err != nil {
		stop()
		c.Close()
		return nil, nil, fmt.Errorf("ldaptarget: bind as %s: %w", d.o.BindDN, err)
	}
	return c, func() { stop(); c.Close() }, nil
}

// Members reads the group's members (without the placeholder).
func (d *Directory) Members(ctx context.Context, dn string) ([]string, error) {
	c, done, err := d.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, int(d.o.Timeout.Seconds()), false,
		"(objectClass=groupOfNames)", []string{"member"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, reconcile.ErrNoGroup
	}
	if err != nil {
		return nil, fmt.Errorf("ldaptarget: read %s: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return nil, reconcile.ErrNoGroup
	}
	var out []string
	for _, m := range res.Entries[0].GetAttributeValues("member") {
		if !strings.EqualFold(m, dn) {
			out = append(out, m)
		}
	}
	return out, nil
}

// Create adds the group with its members.
func (d *Directory) Create(ctx context.Context, dn string, members []string) error {
	c, done, err := d.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	rdn := strings.SplitN(dn, ",", 2)[0]
	k, v, ok := strings.Cut(rdn, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(k), "cn") {
		return fmt.Errorf("ldaptarget: group DN %q must start with cn=", dn)
	}
	if len(members) == 0 {
		members = []string{dn}
	}
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"top", "groupOfNames"})
	req.Attribute("cn", []string{strings.TrimSpace(v)})
	req.Attribute("description", []string{"managed by dirsyncd: holders of a role; do not edit"})
	req.Attribute("member", members)
	if err := c.Add(req); err != nil {
		return fmt.Errorf("ldaptarget: create %s: %w", dn, err)
	}
	return nil
}

// AddMembers adds values to member (and drops the placeholder).
func (d *Directory) AddMembers(ctx context.Context, dn string, members []string) error {
	c, done, err := d.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	req := ldap.NewModifyRequest(dn, nil)
	req.Add("member", members)
	if err := c.Modify(req); err != nil {
		return fmt.Errorf("ldaptarget: add members to %s: %w", dn, err)
	}
	del := ldap.NewModifyRequest(dn, nil)
	del.Delete("member", []string{dn})
	if err := c.Modify(del); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return fmt.Errorf("ldaptarget: drop placeholder of %s: %w", dn, err)
	}
	return nil
}

// RemoveMembers deletes values from member; removing the last one leaves
// the placeholder.
func (d *Directory) RemoveMembers(ctx context.Context, dn string, members []string) error {
	c, done, err := d.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	req := ldap.NewModifyRequest(dn, nil)
	req.Delete("member", members)
	err = c.Modify(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation) {
		// the last members: add the placeholder and delete them in one modify
		req = ldap.NewModifyRequest(dn, nil)
		req.Add("member", []string{dn})
		req.Delete("member", members)
		err = c.Modify(req)
	}
	if err != nil {
		return fmt.Errorf("ldaptarget: remove members from %s: %w", dn, err)
	}
	return nil
}
