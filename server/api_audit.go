package server

import (
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/dirsyncd/dirsyncd/audit"
	"github.com/dirsyncd/dirsyncd/store"
)

// AuditList is the GET /api/v1/audit response; NextAfter, when set, is
// the `after` value of the next page.
type AuditList struct {
	Events    []audit.Event `json:"events"`
	NextAfter int64         `json:"nextAfter,omitempty"`
}

// maxAuditExport bounds one CSV export (page with after= for more).
const maxAuditExport = 100000

// errStop ends an Audit walk early.
var errStop = errors.New("stop")

// parseAuditFilter reads user, actor, action, since, until, after, limit.
func parseAuditFilter(r *http.Request, maxLim int) (store.AuditFilter, string) {
	q := r.URL.Query()
	f := store.AuditFilter{ObjectID: q.Get("user"), Actor: q.Get("actor"), Action: q.Get("action")}
	var ok bool
	if f.Since, ok = timeParam(q.Get("since")); !ok {
		return f, `"since" must be an RFC 3339 time`
	}
	if f.Until, ok = timeParam(q.Get("until")); !ok {
		return f, `"until" must be an RFC 3339 time`
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, `"after" must be a non-negative integer`
		}
		f.AfterSeq = n
	}
	f.Limit = defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, `"limit" must be a positive integer`
		}
		f.Limit = min(n, maxLim)
	}
	return f, ""
}

// getAudit: GET /api/v1/audit?user=&actor=&action=&since=&until=&after=&limit=
// (&format=csv for a CSV export). Support and admin:read tokens read
// everything; a firm admin reads only the history of a user of their firm
// (user= is then required).
func (s *Server) getAudit(w http.ResponseWriter, r *http.Request, c *caller) {
	maxLim := maxLimit
	asCSV := r.URL.Query().Get("format") == "csv"
	if asCSV {
		maxLim = maxAuditExport
	}
	f, bad := parseAuditFilter(r, maxLim)
	if bad != "" {
		writeError(w, http.StatusBadRequest, "invalid_parameter", bad)
		return
	}
	if v := r.URL.Query().Get("format"); v != "" && v != "csv" && v != "json" {
		writeError(w, http.StatusBadRequest, "invalid_parameter", `"format" must be json or csv`)
		return
	}
	if !c.seesAll() {
		if f.ObjectID == "" {
			s.forbid(w, r, `only support reads the whole audit log; give "user" to read one user's history`)
			return
		}
		if _, _, ok := s.loadTarget(w, r, c, f.ObjectID); !ok {
			return
		}
	}
	events, err := s.auditEvents(r, c, f)
	if err != nil {
		s.internal(w, r, "read audit", err)
		return
	}
	setNoStore(w)
	if asCSV {
		writeAuditCSV(w, events)
		return
	}
	out := AuditList{Events: events}
	if len(events) == f.Limit {
		out.NextAfter = events[len(events)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

// auditEvents reads up to f.Limit events of f that c may read
// (caller.auditVisible).
func (s *Server) auditEvents(r *http.Request, c *caller, f store.AuditFilter) ([]audit.Event, error) {
	events := []audit.Event{}
	sf := f
	if !c.seesAll() {
		sf.Limit = 0 // events are left out below: the store must not stop at f.Limit
	}
	err := s.adm.store.Audit(r.Context(), sf, func(e audit.Event) error {
		if !c.auditVisible(e) {
			return nil
		}
		events = append(events, e)
		if len(events) >= f.Limit {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return events, err
}

func writeAuditCSV(w http.ResponseWriter, events []audit.Event) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="audit.csv"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"seq", "time", "actor", "action", "objectType", "objectId", "runId", "requestId", "before", "after", "hash"})
	for _, e := range events {
		_ = cw.Write([]string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(time.RFC3339Nano), csvSafe(e.Actor), csvSafe(e.Action),
			csvSafe(e.ObjectType), csvSafe(e.ObjectID), csvSafe(e.RunID), csvSafe(e.RequestID), csvSafe(string(e.Before)),
			csvSafe(string(e.After)), e.Hash})
	}
	cw.Flush()
}

// csvSafe defuses spreadsheet formula injection: a cell starting with
// = + - @ (or a tab/CR) gets a leading apostrophe.
func csvSafe(v string) string {
	if v != "" && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' || v[0] == '\r') {
		return "'" + v
	}
	return v
}
