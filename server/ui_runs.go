package server

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// changeVerbs are the count names (or their last "_" part) the chart sums
// as changes: what a run wrote, not what it only looked at.
var changeVerbs = []string{"created", "updated", "gone", "deleted", "removed", "added", "changed", "disabled",
	"linked", "unlinked", "granted", "revoked", "applied", "grant", "revoke", "update"}

// runChanges and runFailures are the chart's two series.
func runChanges(r directory.Run) int64 {
	var n int64
	for k, v := range r.Counts {
		last := k[strings.LastIndex(k, "_")+1:]
		if slices.Contains(changeVerbs, last) {
			n += v
		}
	}
	return n
}

func runFailures(r directory.Run) int64 {
	n := r.Counts["failed"]
	if r.Status == directory.RunFailed && n == 0 {
		n = 1
	}
	return n
}

// runRow is one row of the runs page.
type runRow struct {
	directory.Run
	Duration string
	Counts   string
	Changes  int64
	Failures int64
	Stands   bool // failed or held: highlighted
}

func rowOf(r directory.Run) runRow {
	row := runRow{Run: r, Changes: runChanges(r), Failures: runFailures(r)}
	if r.FinishedAt != nil {
		row.Duration = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
	} else if r.Status == directory.RunRunning {
		row.Duration = "running"
	}
	keys := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, r.Counts[k])
	}
	row.Counts = b.String()
	row.Stands = r.Status == directory.RunFailed || r.Status == directory.RunHeld || r.Status == directory.RunAborted
	return row
}

// chartBar is one run in the chart (x, heights precomputed: the template
// only writes numbers).
type chartBar struct {
	X, ChangeY, ChangeH, FailY, FailH int
	Label                             string
}

type chart struct {
	Width, Height int
	Bars          []chartBar
	Max           int64
}

const chartH = 80

// buildChart draws changes (left bar) and failures (right bar) per run,
// oldest on the left, scaled to the largest value.
func buildChart(runs []directory.Run) chart {
	c := chart{Height: chartH + 20}
	var mx int64 = 1
	for _, r := range runs {
		mx = max(mx, runChanges(r), runFailures(r))
	}
	c.Max = mx
	for i := range runs {
		r := runs[len(runs)-1-i]
		ch := int(runChanges(r) * chartH / mx)
		fl := int(runFailures(r) * chartH / mx)
		c.Bars = append(c.Bars, chartBar{X: i*14 + 2, ChangeY: chartH - ch, ChangeH: ch, FailY: chartH - fl, FailH: fl,
			Label: fmt.Sprintf("%s %s: %d changes, %d failures", r.Job, r.StartedAt.UTC().Format(time.RFC3339), runChanges(r), runFailures(r))})
	}
	c.Width = max(len(runs)*14+4, 360)
	return c
}

type runsData struct {
	Rows         []runRow
	Chart        chart
	Job, Status  string
	Next         string
	HasNext      bool
	StatusValues []string
}

func (s *Server) needRunsAccess(w http.ResponseWriter, r *http.Request, c *caller) bool {
	if !c.p.Has(auth.ScopeAdminRead) {
		s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "runs need support"})
		s.uiError(w, r, c, http.StatusForbidden, "Sync reports are for the agency's support staff.")
		return false
	}
	return true
}

func (s *Server) uiRuns(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	if !s.needRunsAccess(w, r, c) {
		return
	}
	q := r.URL.Query()
	d := runsData{Job: q.Get("job"), Status: q.Get("status"),
		StatusValues: []string{"", "running", "ok", "failed", "aborted", "held"}}
	rq := store.RunQuery{Job: d.Job, Status: directory.RunStatus(d.Status), Limit: defaultLimit}
	if !slices.Contains(d.StatusValues, d.Status) {
		s.uiError(w, r, c, http.StatusBadRequest, `"status" must be running, ok, failed, aborted or held`)
		return
	}
	if t, ok := timeParam(q.Get("before")); !ok {
		s.uiError(w, r, c, http.StatusBadRequest, `"before" must be an RFC 3339 time`)
		return
	} else {
		rq.Before = t
	}
	runs, err := s.adm.store.ListRuns(r.Context(), rq)
	if err != nil {
		s.internalPage(w, r, "list runs", err)
		return
	}
	for _, run := range runs {
		d.Rows = append(d.Rows, rowOf(run))
	}
	d.Chart = buildChart(runs)
	if len(runs) == rq.Limit {
		d.HasNext = true
		d.Next = runs[len(runs)-1].StartedAt.UTC().Format(time.RFC3339Nano)
	}
	s.render(w, r, http.StatusOK, "runs", uiPage{Title: "Runs", Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

// itemRow is one change of a run, before and after as compact JSON.
type itemRow struct {
	directory.RunItem
	BeforeText, AfterText string
}

type runData struct {
	Run     runRow
	Items   []itemRow
	Action  string
	Actions []string
	NextSeq int64
	HasNext bool
	HasPlan bool
}

// itemActions are the actions offered in the filter (any value is accepted).
var itemActions = []string{"created", "updated", "gone", "disputed", "failed", "dropped", "grant", "revoke", "update"}

func (s *Server) uiRun(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	if !s.needRunsAccess(w, r, c) {
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	run, err := s.adm.store.GetRun(r.Context(), id)
	if isNotFound(err) {
		s.uiError(w, r, c, http.StatusNotFound, "No run with this id.")
		return
	}
	if err != nil {
		s.internalPage(w, r, "get run", err)
		return
	}
	action := q.Get("action")
	switch q.Get("format") {
	case "csv", "json":
		s.exportItems(w, r, run, action, q.Get("format"))
		return
	case "":
	default:
		s.uiError(w, r, c, http.StatusBadRequest, `"format" must be csv or json`)
		return
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.uiError(w, r, c, http.StatusBadRequest, `"after" must be a non-negative integer`)
			return
		}
		after = n
	}
	items, err := s.adm.store.ListRunItems(r.Context(), store.RunItemQuery{RunID: id, Action: action, AfterSeq: after, Limit: defaultLimit})
	if err != nil {
		s.internalPage(w, r, "list run items", err)
		return
	}
	d := runData{Run: rowOf(run), Action: action, Actions: itemActions, HasPlan: len(run.Plan) > 0}
	for _, it := range items {
		d.Items = append(d.Items, itemRow{RunItem: it, BeforeText: compactJSON(it.Before), AfterText: compactJSON(it.After)})
	}
	if len(items) == defaultLimit {
		d.HasNext, d.NextSeq = true, items[len(items)-1].Seq
	}
	s.render(w, r, http.StatusOK, "run", uiPage{Title: "Run " + run.ID, Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

func compactJSON(b json.RawMessage) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}

// exportItems streams every item of the run matching action, 1000 at a
// time (never all in memory), as CSV or a JSON array.
func (s *Server) exportItems(w http.ResponseWriter, r *http.Request, run directory.Run, action, format string) {
	name := "run-" + run.ID + "." + format
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	var cw *csv.Writer
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw = csv.NewWriter(w)
		_ = cw.Write([]string{"seq", "action", "objectType", "objectId", "reason", "before", "after"})
	} else {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte("[\n"))
	}
	var after int64
	first := true
	for {
		items, err := s.adm.store.ListRunItems(r.Context(), store.RunItemQuery{RunID: run.ID, Action: action, AfterSeq: after, Limit: 1000})
		if err != nil {
			// Headers are gone: end the body visibly broken and log.
			s.log.Error("export run items", errField(err), reqField(r))
			_, _ = w.Write([]byte("\nexport failed: internal error\n"))
			return
		}
		for _, it := range items {
			if cw != nil {
				_ = cw.Write([]string{strconv.FormatInt(it.Seq, 10), csvSafe(it.Action), csvSafe(it.ObjectType), csvSafe(it.ObjectID),
					csvSafe(it.Reason), csvSafe(compactJSON(it.Before)), csvSafe(compactJSON(it.After))})
				continue
			}
			b, _ := json.Marshal(it)
			if !first {
				_, _ = w.Write([]byte(",\n"))
			}
			first = false
			_, _ = w.Write(b)
		}
		if len(items) < 1000 {
			break
		}
		after = items[len(items)-1].Seq
	}
	if cw != nil {
		cw.Flush()
	} else {
		_, _ = w.Write([]byte("\n]\n"))
	}
}

type planChange struct {
	Action, User, Firm, Service, Role, Reason string
	Before, After                             string // office scope, compact JSON
}

type planData struct {
	Run      runRow
	Hash     string
	Changes  []planChange
	Raw      string
	Held     bool
	CanApply bool
}

// decodePlan reads the reconcile plan's changes for display; unknown
// shapes fall back to the raw JSON.
func decodePlan(b json.RawMessage) []planChange {
	var p struct {
		Changes []map[string]any `json:"changes"`
	}
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	str := func(m map[string]any, keys ...string) string {
		for _, k := range keys {
			if v, ok := m[k].(string); ok && v != "" {
				return v
			}
		}
		return ""
	}
	var out []planChange
	for _, c := range p.Changes {
		out = append(out, planChange{Action: str(c, "action"), User: str(c, "userName", "userId"),
			Firm: str(c, "firm", "firmNumber"), Service: str(c, "service"), Role: str(c, "role"),
			Reason: str(c, "reason"), Before: scopeText(c["before"]), After: scopeText(c["after"])})
	}
	return out
}

func (s *Server) uiPlan(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	if !s.needRunsAccess(w, r, c) {
		return
	}
	run, err := s.adm.store.GetRun(r.Context(), r.PathValue("id"))
	if isNotFound(err) {
		s.uiError(w, r, c, http.StatusNotFound, "No run with this id.")
		return
	}
	if err != nil {
		s.internalPage(w, r, "get run", err)
		return
	}
	if len(run.Plan) == 0 {
		s.uiError(w, r, c, http.StatusNotFound, "This run has no stored plan (only held runs keep one).")
		return
	}
	d := planData{Run: rowOf(run), Hash: run.PlanHash, Changes: decodePlan(run.Plan), Held: run.Status == directory.RunHeld,
		CanApply: c.support()}
	if d.Changes == nil {
		d.Raw = compactJSON(run.Plan)
	}
	s.render(w, r, http.StatusOK, "plan", uiPage{Title: "Held plan of run " + run.ID, Me: s.me(c), CSRF: s.csrfOf(sd), Data: d})
}

func (s *Server) uiApprove(w http.ResponseWriter, r *http.Request, c *caller, sd sessionData) {
	if !c.support() {
		s.logRefusal(r, &authFailure{status: http.StatusForbidden, code: "forbidden", reason: "approve needs support"})
		s.uiError(w, r, c, http.StatusForbidden, "Only the agency's support staff approve held plans.")
		return
	}
	id := r.PathValue("id")
	status, _, msg := s.approve(r, c, id, r.PostFormValue("planHash"))
	if status != http.StatusOK {
		s.uiError(w, r, c, status, msg)
		return
	}
	http.Redirect(w, r, "/ui/runs/"+id, http.StatusSeeOther)
}

// scopeText shows a planned office scope: "all offices", the codes, or "".
func scopeText(v any) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	if all, _ := m["allOffices"].(bool); all {
		return "all offices"
	}
	var codes []string
	if os, ok := m["offices"].([]any); ok {
		for _, o := range os {
			if c, ok := o.(string); ok {
				codes = append(codes, c)
			}
		}
	}
	if len(codes) == 0 {
		return "no office"
	}
	return strings.Join(codes, ", ")
}
