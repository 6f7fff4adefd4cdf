package cwafake

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// ServeLean serves h on ln with a minimal HTTP/1.1 server until ln is
// closed: keep-alive connections, requests parsed by net/http's
// ReadRequest, each answer buffered and written with one write. It exists
// for the sync benchmark, which runs the fake in the client's process on
// the same two cores: net/http's server costs about as much CPU per
// request as the client under test, work the real CWA does on its own
// machine. The answers are the Handler's (same status, headers and body,
// the same faults: a truncated body is cut and the connection closed);
// TestLeanServerSameAnswers compares them with net/http's. It supports
// only what the fake needs (no chunked or streamed answers, no 100-continue,
// no timeouts): tests and the demo use net/http (Handler, Server).
func ServeLean(ln net.Listener, h http.Handler) error {
	// Requests' context ends when the listener is closed (a latency fault
	// then stops waiting), and ServeLean waits for its connections.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer func() {
		cancel()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveLeanConn(ctx, c, h)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

func serveLeanConn(ctx context.Context, c net.Conn, h http.Handler) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	w := &leanWriter{header: http.Header{}}
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return // EOF, or a request net/http would refuse: close
		}
		req = req.WithContext(ctx)
		req.RemoteAddr = c.RemoteAddr().String()
		_, _ = io.Copy(io.Discard, req.Body)
		w.reset()
		h.ServeHTTP(w, req)
		keep, err := w.writeTo(c, req)
		if err != nil || !keep {
			return
		}
	}
}

// leanWriter buffers one answer.
type leanWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
	out    []byte
}

func (w *leanWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

func (w *leanWriter) Header() http.Header { return w.header }

func (w *leanWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *leanWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// writeTo sends the answer; keep says whether the connection may serve
// another request. A body shorter than the Content-Length the handler set
// is sent as it is and the connection closed (FaultTruncated), as
// net/http's server does.
func (w *leanWriter) writeTo(c net.Conn, req *http.Request) (keep bool, err error) {
	w.WriteHeader(http.StatusOK)
	keep = !req.Close
	if cl := w.header.Get("Content-Length"); cl == "" {
		w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	} else if n, err := strconv.Atoi(cl); err != nil || n != w.body.Len() {
		keep = false
	}
	if !keep {
		w.header.Set("Connection", "close")
	}
	b := w.out[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\n"...)
	for k, vs := range w.header {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	b = append(b, w.body.Bytes()...)
	w.out = b
	_, err = c.Write(b)
	return keep, err
}
