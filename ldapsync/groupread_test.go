package ldapsync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsyncd/dirsyncd/directory"
)

// slowLinks is a store whose ScanLinks (the full run's prefetch) waits
// until the directory has been asked for the groups, or gives up.
type slowLinks struct {
	testStore
	conn   *replayConn
	filter string
	waited chan bool // true: the group search came while the prefetch waited
}

func (s *slowLinks) ScanLinks(ctx context.Context, source string, fn func(directory.SourceLink) error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.conn.mu.Lock()
		asked := false
		for _, l := range s.conn.log {
			asked = asked || strings.Contains(l, s.filter)
		}
		s.conn.mu.Unlock()
		if asked || time.Now().After(deadline) {
			s.waited <- asked
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s.testStore.ScanLinks(ctx, source, fn)
}

// TestFullRunReadsGroupsBesideUserPlanning: a full run asks the directory
// for its groups as soon as the users are read, while the users still wait
// (in the backlog) for the store's state; the result is the same as when
// the read comes after.
func TestFullRunReadsGroupsBesideUserPlanning(t *testing.T) {
	c := loadRecorded(t, "full")
	src := adSource()
	st := &slowLinks{testStore: openSQLite(t), conn: c, filter: src.GroupFilter, waited: make(chan bool, 1)}
	res, err := New(src, st, Options{Dial: dialReplay(c)}).Run(context.Background(), RunOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if !<-st.waited {
		t.Errorf("the group read did not start while the store's state was read:\n%s", strings.Join(c.log, "\n"))
	}
	if res.Counts["created"] != 5 || res.Counts["groups_created"] != 2 {
		t.Fatalf("counts %v", res.Counts)
	}
	sup, err := st.ListGroups(context.Background(), storeGroupByName("Supervisors"))
	if err != nil || len(sup.Items) != 1 {
		t.Fatalf("Supervisors: %v", err)
	}
	if n, _ := st.CountGroupMembers(context.Background(), sup.Items[0].ID); n != 5 {
		t.Fatalf("Supervisors effective members = %d, want 5", n)
	}
}

// TestGroupReaderBudget: the reader holds at most groupReadAhead member
// values not yet taken (a page alone always fits) and stops waiting when
// stopped.
func TestGroupReaderBudget(t *testing.T) {
	newReader := func() *groupReader { return newGroupReader(func() {}) }
	gr := newReader()
	if !gr.reserve(groupReadAhead + 10) { // alone: fits
		t.Fatal("a page alone did not fit")
	}
	gr.pages <- []ldapGroup{{Members: make([]string, groupReadAhead+10)}}
	got := make(chan bool, 1)
	go func() { got <- gr.reserve(1) }()
	select {
	case <-got:
		t.Fatal("a second page was read ahead past the budget")
	case <-time.After(100 * time.Millisecond):
	}
	if _, ok := gr.take(); !ok {
		t.Fatal("take: no page")
	}
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("reserve after take: false")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("taking the page did not let the reader go on")
	}

	gr = newReader()
	gr.reserve(groupReadAhead)
	gr.pages <- []ldapGroup{{Members: make([]string, groupReadAhead)}}
	go func() { got <- gr.reserve(1) }()
	close(gr.pages) // what the reader does once reserve returns false
	gr.stop()
	if ok := <-got; ok {
		t.Fatal("reserve after stop: true")
	}
}

// hangingConn answers no search until released (a server that stopped
// answering without closing the connection).
type hangingConn struct{ release chan struct{} }

func (c hangingConn) Search(*ldap.SearchRequest) (*ldap.SearchResult, error) {
	<-c.release
	return nil, ldap.NewError(ldap.ErrorNetwork, errors.New("released"))
}
func (c hangingConn) Close() error { return nil }

// TestCancelEndsHungSearch: cancelling a paged search (a run that stops
// its group read) returns at once, not when the hung request returns.
func TestCancelEndsHungSearch(t *testing.T) {
	c := hangingConn{release: make(chan struct{})}
	defer close(c.release)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pagedSearch(ctx, c, "dc=x", "(objectClass=*)", nil, 10, 0, func([]*ldap.Entry) error { return nil })
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled search: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled search waited for the hung request")
	}
}
