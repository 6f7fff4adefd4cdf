package cwafake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is the fake listening on a TCP address: the in-process CWA of the
// demo (`make run` with cwa.fake.enabled).
type Server struct {
	*Handler
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr ("127.0.0.1:0" picks a free port) and returns a Server
// for h; Run serves it.
func Listen(addr string, h *Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cwafake: listen %s: %w", addr, err)
	}
	return &Server{Handler: h, ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// URL is the base URL clients use.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Run serves until ctx ends, then shuts down (waiting up to 5 s for
// requests in flight).
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("cwafake: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("cwafake: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cwafake: serve: %w", err)
	}
	return nil
}
