package ldapsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
)

// Conn is the part of an LDAP connection ldapsync uses. *ldap.Conn
// satisfies it; tests replay recorded responses through it.
type Conn interface {
	Search(req *ldap.SearchRequest) (*ldap.SearchResult, error)
	Close() error
}

// Dialer opens a bound connection to a source.
type Dialer func(ctx context.Context, src config.LDAPSource) (Conn, error)

// ErrTruncated means the server stopped a paged search early.
var ErrTruncated = errors.New("paged search truncated")

// Dial connects to src.URL (ldap:// or ldaps://), upgrades with StartTLS
// when configured, and binds with the configured DN and password. The
// connection is a wireConn (wire.go): go-ldap's requests, a leaner reader
// of the replies.
func Dial(ctx context.Context, src config.LDAPSource) (Conn, error) {
	tlsCfg, err := tlsConfig(src)
	if err != nil {
		return nil, err
	}
	return dialWire(ctx, src, tlsCfg)
}

func tlsConfig(src config.LDAPSource) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: src.ServerName}
	if cfg.ServerName == "" {
		if u, err := url.Parse(src.URL); err == nil {
			cfg.ServerName = u.Hostname()
		}
	}
	if src.CAFile != "" {
		pem, err := os.ReadFile(src.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ldapsync: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ldapsync: CA file %s holds no PEM certificate", src.CAFile)
		}
		cfg.RootCAs = pool
	}
	if src.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(src.ClientCertFile, src.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("ldapsync: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ctxConn closes the underlying connection when ctx ends, so a blocking
// go-ldap call returns. It also applies the source's referral policy to
// every search (ldap.sources[].referrals): a search reference means part
// of the subtree was not read.
type ctxConn struct {
	Conn
	stop func() bool
	once sync.Once

	ignoreReferrals bool
	referrals       atomic.Int64 // ignored so far (searches run on pagedSearch's goroutine)
}

// Search runs req; with the abort policy a result holding search
// references is an error (ErrTruncated), naming them.
func (c *ctxConn) Search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	res, err := c.Conn.Search(req)
	if err != nil || res == nil || len(res.Referrals) == 0 {
		return res, err
	}
	if c.ignoreReferrals {
		c.referrals.Add(int64(len(res.Referrals)))
		return res, nil
	}
	refs := res.Referrals
	more := ""
	if len(refs) > 3 {
		refs, more = refs[:3], fmt.Sprintf(" and %d more", len(res.Referrals)-3)
	}
	return nil, fmt.Errorf("ldapsync: search %q: the server referred part of the subtree to %s%s, which was not read: %w "+
		"(set referrals: ignore if no user or group of this source is there, or use a base DN below them)",
		req.BaseDN, strings.Join(refs, ", "), more, ErrTruncated)
}

func withContext(ctx context.Context, c Conn) *ctxConn {
	cc := &ctxConn{Conn: c}
	cc.stop = context.AfterFunc(ctx, func() { _ = c.Close() })
	return cc
}

func (c *ctxConn) Close() error {
	var err error
	c.once.Do(func() {
		c.stop()
		err = c.Conn.Close()
	})
	return err
}

// pagedSearch runs an RFC 2696 paged subtree search and calls fn per page.
// The next page is requested while fn handles the current one (at most two
// pages are held). A page without the paging control after the first, a
// size or time limit, or any error aborts with an error: a partial read is
// never complete.
func pagedSearch(ctx context.Context, c Conn, base, filter string, attrs []string, pageSize int, timeLimit int,
	fn func(entries []*ldap.Entry) error) error {
	return pagedSearchWith(ctx, c, base, filter, attrs, pageSize, timeLimit, nil, fn)
}

// pagedSearchWith is pagedSearch with extra request controls.
func pagedSearchWith(ctx context.Context, c Conn, base, filter string, attrs []string, pageSize int, timeLimit int,
	extra []ldap.Control, fn func(entries []*ldap.Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type page struct {
		entries []*ldap.Entry
		err     error
	}
	pages := make(chan page, 1)
	go func() {
		defer close(pages)
		paging := ldap.NewControlPaging(uint32(pageSize))
		for n := 0; ; n++ {
			entries, cookie, err := searchPage(ctx, c, base, filter, attrs, timeLimit, append([]ldap.Control{paging}, extra...), n)
			select {
			case pages <- page{entries, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(cookie) == 0 {
				return
			}
			paging.SetCookie(cookie)
		}
	}()
	for {
		// A cancelled context ends the read now, not when a request the
		// server is slow to answer returns (the request's goroutine ends
		// then, on its own).
		select {
		case p, ok := <-pages:
			if !ok {
				return ctx.Err()
			}
			if p.err != nil {
				return p.err
			}
			if err := fn(p.entries); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("ldapsync: search %q: %w", base, ctx.Err())
		}
	}
}

// searchPage requests one page; the returned cookie is empty on the last.
func searchPage(ctx context.Context, c Conn, base, filter string, attrs []string, timeLimit int,
	controls []ldap.Control, n int) ([]*ldap.Entry, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("ldapsync: search %q: %w", base, err)
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, timeLimit, false,
		filter, attrs, controls)
	res, err := c.Search(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, fmt.Errorf("ldapsync: search %q: %w (%v)", base, cerr, err)
		}
		if ldap.IsErrorAnyOf(err, ldap.LDAPResultSizeLimitExceeded, ldap.LDAPResultTimeLimitExceeded,
			ldap.LDAPResultAdminLimitExceeded) {
			return nil, nil, fmt.Errorf("ldapsync: search %q page %d: %w: %v", base, n, ErrTruncated, err)
		}
		return nil, nil, fmt.Errorf("ldapsync: search %q page %d: %w", base, n, err)
	}
	ctl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if ctl == nil {
		if n > 0 {
			return nil, nil, fmt.Errorf("ldapsync: search %q page %d: %w: no paging control in response", base, n, ErrTruncated)
		}
		return res.Entries, nil, nil // the server ignored paging and sent everything
	}
	return res.Entries, ctl.Cookie, nil
}

// readBase reads one entry (scope base).
func readBase(c Conn, dn string, attrs []string) (*ldap.Entry, error) {
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", attrs, nil)
	res, err := c.Search(req)
	if err != nil {
		return nil, fmt.Errorf("ldapsync: read %q: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return nil, fmt.Errorf("ldapsync: read %q: %d entries", dn, len(res.Entries))
	}
	return res.Entries[0], nil
}
