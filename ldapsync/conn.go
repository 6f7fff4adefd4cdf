package ldapsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"

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
// when configured, and binds with the configured DN and password.
func Dial(ctx context.Context, src config.LDAPSource) (Conn, error) {
	tlsCfg, err := tlsConfig(src)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: src.DialTimeout}
	type res struct {
		c   *ldap.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ldap.DialURL(src.URL, ldap.DialWithDialer(d), ldap.DialWithTLSConfig(tlsCfg))
		ch <- res{c, err}
	}()
	var c *ldap.Conn
	select {
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("ldapsync: dial %s: %w", src.URL, ctx.Err())
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("ldapsync: dial %s: %w", src.URL, r.err)
		}
		c = r.c
	}
	if src.RequestTimeout > 0 {
		c.SetTimeout(src.RequestTimeout)
	}
	if src.StartTLS {
		if err := c.StartTLS(tlsCfg); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldapsync: starttls %s: %w", src.URL, err)
		}
	}
	if src.BindDN != "" {
		if err := c.Bind(src.BindDN, src.BindPassword.Value()); err != nil {
			c.Close()
			return nil, fmt.Errorf("ldapsync: bind %q: %w", src.BindDN, err)
		}
	}
	return c, nil
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
// go-ldap call returns.
type ctxConn struct {
	Conn
	stop func() bool
	once sync.Once
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
			entries, cookie, err := searchPage(ctx, c, base, filter, attrs, timeLimit, paging, n)
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
	for p := range pages {
		if p.err != nil {
			return p.err
		}
		if err := fn(p.entries); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// searchPage requests one page; the returned cookie is empty on the last.
func searchPage(ctx context.Context, c Conn, base, filter string, attrs []string, timeLimit int,
	paging *ldap.ControlPaging, n int) ([]*ldap.Entry, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("ldapsync: search %q: %w", base, err)
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, timeLimit, false,
		filter, attrs, []ldap.Control{paging})
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
