package server

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dirsyncd/dirsyncd/auth"
)

// limiter is a token bucket per client (tokens[].rateLimit and burst):
// each request takes one token; tokens refill at the client's rate.
type limiter struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow reports whether p may make a request now, and otherwise how long
// until it may.
func (l *limiter) allow(p auth.Principal) (bool, time.Duration) {
	if p.RateLimit <= 0 {
		return true, 0
	}
	burst := float64(p.Burst)
	if burst < 1 {
		burst = math.Max(1, 2*p.RateLimit)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[p.Name]
	if !ok {
		b = &bucket{tokens: burst, last: now}
		l.buckets[p.Name] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.last).Seconds()*p.RateLimit)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / p.RateLimit * float64(time.Second))
	return false, wait
}

// rateLimited answers 429 with Retry-After when p is over its rate, and
// logs the refusal.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	ok, wait := s.limiter.allow(p)
	if ok {
		return false
	}
	s.logRefusal(r, &authFailure{status: http.StatusTooManyRequests, code: "rate_limited", reason: "over the rate limit of " + p.Name})
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests for this token; retry later")
	return true
}
