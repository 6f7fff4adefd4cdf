package server

import (
	"encoding/json"
	"errors"
	"net/http"
)

// HeldPlan is GET /api/v1/runs/{id}/plan.
type HeldPlan struct {
	RunID    string          `json:"runId"`
	Status   string          `json:"status"`
	PlanHash string          `json:"planHash"`
	Plan     json.RawMessage `json:"plan"`
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	run, err := s.adm.store.GetRun(r.Context(), r.PathValue("id"))
	if isNotFound(err) {
		writeError(w, http.StatusNotFound, "not_found", "no run with this id")
		return
	}
	if err != nil {
		s.internal(w, r, "get run", err)
		return
	}
	if len(run.Plan) == 0 {
		writeError(w, http.StatusNotFound, "no_plan", "this run has no stored plan (only held runs keep one)")
		return
	}
	writeJSON(w, http.StatusOK, HeldPlan{RunID: run.ID, Status: string(run.Status), PlanHash: run.PlanHash, Plan: run.Plan})
}

type approveRequest struct {
	PlanHash string `json:"planHash"`
}

// postApprove: POST /api/v1/runs/{id}/approve {"planHash": "..."}, support
// only; applies exactly the held plan.
func (s *Server) postApprove(w http.ResponseWriter, r *http.Request) {
	var req approveRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.PlanHash == "" {
		writeError(w, http.StatusBadRequest, "invalid_field", `"planHash" is required`)
		return
	}
	c := callerFrom(r.Context())
	status, code, msg := s.approve(r, c, r.PathValue("id"), req.PlanHash)
	if status != http.StatusOK {
		writeError(w, status, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"runId": r.PathValue("id"), "planHash": req.PlanHash, "status": "approved"})
}

// approve runs the Approver and maps its errors to a status.
func (s *Server) approve(r *http.Request, c *caller, runID, hash string) (int, string, string) {
	if s.adm.approver == nil {
		return http.StatusServiceUnavailable, "unavailable", "this server cannot approve plans (no reconciler)"
	}
	if _, err := s.adm.store.GetRun(r.Context(), runID); isNotFound(err) {
		return http.StatusNotFound, "not_found", "no run with this id"
	} else if err != nil {
		s.log.Error("get run", errField(err), reqField(r))
		return http.StatusInternalServerError, "internal", "internal error"
	}
	err := s.adm.approver.Approve(r.Context(), runID, hash, c.actor())
	switch {
	case err == nil:
		return http.StatusOK, "", ""
	case errors.Is(err, ErrPlanMismatch):
		return http.StatusConflict, "plan_mismatch", `"planHash" does not match the held run's plan`
	case errors.Is(err, ErrNotHeld):
		return http.StatusConflict, "not_held", "the run is not held (already approved or never held)"
	case errors.Is(err, ErrPlanStale):
		return http.StatusConflict, "plan_stale", "grants changed since the plan was made; run reconcile again"
	}
	s.log.Error("approve", errField(err), reqField(r))
	return http.StatusInternalServerError, "internal", "internal error (request id " + RequestID(r.Context()) + ")"
}
