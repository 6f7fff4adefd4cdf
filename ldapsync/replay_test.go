package ldapsync

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/config"
)

// replayConn answers searches from recorded responses, matched by base,
// scope, filter and (for base reads) the requested range attribute. Paged
// searches get one recorded page per request with a cookie for the next.
type replayConn struct {
	mu       sync.Mutex
	reqs     []recReq
	log      []string
	closed   bool
	noCookie bool // drop the paging control after the first page (a broken server)
	// pageSizes records "filter size" for every paged search
	pageSizes []string
	// controls records "filter oid..." for every search
	controls []string
	// failFilter: a search with this filter fails with a network error
	failFilter string
}

type recReq struct {
	Base   string       `json:"base"`
	Scope  int          `json:"scope"`
	Filter string       `json:"filter"`
	Attr   string       `json:"attr,omitempty"`
	Pages  [][]recEntry `json:"pages"`
}

type recEntry struct {
	DN     string              `json:"dn"`
	Attrs  map[string][]string `json:"attrs"`
	Binary map[string][]string `json:"binary"` // base64
}

func (e recEntry) entry() *ldap.Entry {
	out := &ldap.Entry{DN: e.DN}
	for name, vals := range e.Attrs {
		a := &ldap.EntryAttribute{Name: name, Values: vals}
		for _, v := range vals {
			a.ByteValues = append(a.ByteValues, []byte(v))
		}
		out.Attributes = append(out.Attributes, a)
	}
	for name, vals := range e.Binary {
		a := &ldap.EntryAttribute{Name: name}
		for _, v := range vals {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				panic(err)
			}
			a.ByteValues = append(a.ByteValues, b)
			a.Values = append(a.Values, string(b))
		}
		out.Attributes = append(out.Attributes, a)
	}
	return out
}

func loadRecorded(t *testing.T, phase string) *replayConn {
	t.Helper()
	b, err := os.ReadFile("testdata/ad_recorded.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Phases map[string][]recReq `json:"phases"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	reqs, ok := f.Phases[phase]
	if !ok {
		t.Fatalf("no recorded phase %q", phase)
	}
	return &replayConn{reqs: reqs}
}

func (c *replayConn) Search(req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("connection closed"))
	}
	c.log = append(c.log, fmt.Sprintf("%d %q %s %v", req.Scope, req.BaseDN, req.Filter, req.Attributes))
	ctl := req.Filter
	for _, x := range req.Controls {
		ctl += " " + x.GetControlType()
	}
	c.controls = append(c.controls, ctl)
	if c.failFilter != "" && req.Filter == c.failFilter {
		return nil, ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("connection reset"))
	}
	for _, r := range c.reqs {
		if !strings.EqualFold(r.Base, req.BaseDN) || r.Scope != req.Scope || r.Filter != req.Filter {
			continue
		}
		if r.Attr != "" && (len(req.Attributes) == 0 || !strings.EqualFold(req.Attributes[0], r.Attr)) {
			continue
		}
		page := 0
		paging, _ := ldap.FindControl(req.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if paging != nil {
			c.pageSizes = append(c.pageSizes, fmt.Sprintf("%s %d", req.Filter, paging.PagingSize))
		}
		if paging != nil && len(paging.Cookie) > 0 {
			page, _ = strconv.Atoi(string(paging.Cookie))
		}
		res := &ldap.SearchResult{}
		if page < len(r.Pages) {
			for _, e := range r.Pages[page] {
				res.Entries = append(res.Entries, e.entry())
			}
		}
		if paging != nil && !(c.noCookie && page > 0) {
			ctl := ldap.NewControlPaging(paging.PagingSize)
			if page+1 < len(r.Pages) {
				ctl.SetCookie([]byte(strconv.Itoa(page + 1)))
			}
			res.Controls = append(res.Controls, ctl)
		}
		return res, nil
	}
	return nil, ldap.NewError(ldap.LDAPResultNoSuchObject, fmt.Errorf("no recorded response for scope %d base %q filter %s attrs %v",
		req.Scope, req.BaseDN, req.Filter, req.Attributes))
}

func (c *replayConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func adSource() config.LDAPSource {
	src := config.LDAPSource{Name: "corp", URL: "ldaps://dc1.corp.example", Dialect: config.LDAPDialectAD,
		UserBaseDNs: []string{"OU=Staff,DC=corp,DC=example"}, PageSize: 2}
	src.ApplyDefaults()
	return src
}

func dialReplay(c *replayConn) Dialer {
	return func(context.Context, config.LDAPSource) (Conn, error) {
		c.mu.Lock()
		c.closed = false
		c.mu.Unlock()
		return c, nil
	}
}
