package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/directory"
	"github.com/dirsyncd/dirsyncd/store"
)

// Paging bounds of the runs API.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// Errors a Trigger returns (wrapped) so POST /api/v1/runs answers 404,
// 409 or 503; cmd/dirsyncd maps the scheduler's errors onto them.
var (
	ErrUnknownJob  = errors.New("unknown job")
	ErrBusy        = errors.New("job already running")
	ErrUnavailable = errors.New("scheduler unavailable")
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("not ready", zap.Error(err), zap.String("request_id", RequestID(r.Context())))
		writeError(w, http.StatusServiceUnavailable, "not_ready", "the store is not reachable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func parseLimit(v string) (int, bool) {
	if v == "" {
		return defaultLimit, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, false
	}
	return min(n, maxLimit), true
}

// RunList is the GET /api/v1/runs response. Next, when set, is the
// `before` value of the next page.
type RunList struct {
	Runs []directory.Run `json:"runs"`
	Next string          `json:"next,omitempty"`
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok := parseLimit(q.Get("limit"))
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "limit must be a positive integer")
		return
	}
	rq := store.RunQuery{Job: q.Get("job"), Status: directory.RunStatus(q.Get("status")), Limit: limit}
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "before must be an RFC 3339 time")
			return
		}
		rq.Before = t
	}
	switch rq.Status {
	case "", directory.RunRunning, directory.RunOK, directory.RunFailed, directory.RunAborted, directory.RunHeld:
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "status must be running, ok, failed, aborted or held")
		return
	}
	runs, err := s.store.ListRuns(r.Context(), rq)
	if err != nil {
		s.internal(w, r, "list runs", err)
		return
	}
	out := RunList{Runs: runs}
	if out.Runs == nil {
		out.Runs = []directory.Run{}
	}
	if len(runs) == limit {
		out.Next = runs[len(runs)-1].StartedAt.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, out)
}

// RunDetail is the GET /api/v1/runs/{id} response: the run and one page of
// its items. NextAfter, when set, is the `after` value of the next page.
type RunDetail struct {
	Run       directory.Run       `json:"run"`
	Items     []directory.RunItem `json:"items"`
	NextAfter int64               `json:"nextAfter,omitempty"`
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	limit, ok := parseLimit(q.Get("limit"))
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "limit must be a positive integer")
		return
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "after must be a non-negative integer")
			return
		}
		after = n
	}
	run, err := s.store.GetRun(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no run with this id")
		return
	}
	if err != nil {
		s.internal(w, r, "get run", err)
		return
	}
	items, err := s.store.ListRunItems(r.Context(), store.RunItemQuery{RunID: id, Action: q.Get("action"), AfterSeq: after, Limit: limit})
	if err != nil {
		s.internal(w, r, "list run items", err)
		return
	}
	out := RunDetail{Run: run, Items: items}
	if out.Items == nil {
		out.Items = []directory.RunItem{}
	}
	if len(items) == limit {
		out.NextAfter = items[len(items)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

type triggerRequest struct {
	Job string `json:"job"`
}

func (s *Server) postRun(w http.ResponseWriter, r *http.Request) {
	var req triggerRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Job == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `"job" is required`)
		return
	}
	if s.trigger == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this server runs no scheduler")
		return
	}
	id, err := s.trigger.Trigger(r.Context(), req.Job)
	switch {
	case err == nil:
		w.Header().Set("Location", "/api/v1/runs/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "job": req.Job})
	case errors.Is(err, ErrUnknownJob):
		writeError(w, http.StatusNotFound, "unknown_job", "no job named "+strconv.Quote(req.Job))
	case errors.Is(err, ErrBusy):
		writeError(w, http.StatusConflict, "busy", "the job is already running")
	case errors.Is(err, ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
	default:
		s.internal(w, r, "trigger run", err)
	}
}

// decodeJSON reads one JSON object into v, answering 413 past the body
// limit and 400 on bad JSON or unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if isTooLarge(err) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
		} else {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		}
		return false
	}
	return true
}

// internal logs err (with the request id) and answers 500 without details.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, op string, err error) {
	s.log.Error(op, zap.Error(err), zap.String("request_id", RequestID(r.Context())))
	writeError(w, http.StatusInternalServerError, "internal", "internal error (request id "+RequestID(r.Context())+")")
}
