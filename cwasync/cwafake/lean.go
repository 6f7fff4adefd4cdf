package cwafake

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// ServeLean serves h on ln with a minimal HTTP/1.1 server until ln is
// closed: keep-alive connections, request heads parsed in place
// (readLeanRequest), each answer buffered and written with one write. It exists
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
	// One request value per connection, refilled for each request (the
	// Handler keeps nothing of it).
	req := (&http.Request{Header: http.Header{}, URL: &url.URL{}, RemoteAddr: c.RemoteAddr().String()}).WithContext(ctx)
	for {
		if err := readLeanRequest(br, req); err != nil {
			return // EOF, or a request this server does not take: close
		}
		w.reset()
		h.ServeHTTP(w, req)
		keep, err := w.writeTo(c, req)
		if err != nil || !keep {
			return
		}
	}
}

// errLeanRequest: a request ServeLean does not take (the connection is
// closed, as net/http's server does with a request it cannot parse).
var errLeanRequest = errors.New("cwafake: request not supported by the lean server")

// readLeanRequest reads one HTTP/1.x request head into req: the request
// line, the headers (canonical keys), Host, Close; a Content-Length body is
// read and dropped, a chunked one refused. It does what net/http's
// ReadRequest does for the requests a CWA client sends, without its
// allocations per request (a benchmark sync makes 55,000).
func readLeanRequest(br *bufio.Reader, req *http.Request) error {
	line, err := readLine(br)
	if err != nil {
		return err
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return errLeanRequest
	}
	method, target, proto := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
		req.ProtoMinor, req.Close = 1, false
	case "HTTP/1.0":
		req.ProtoMinor, req.Close = 0, true
	default:
		return errLeanRequest
	}
	req.Proto, req.ProtoMajor = string(proto), 1
	if string(method) != req.Method { // usually GET again: no allocation
		req.Method = string(method)
	}
	if err := setLeanURL(req.URL, target); err != nil {
		return err
	}
	clear(req.Header)
	req.Host = ""
	var bodyLen int64
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errLeanRequest
		}
		key := textproto.CanonicalMIMEHeaderKey(string(line[:colon]))
		val := string(bytes.TrimSpace(line[colon+1:]))
		switch key {
		case "Host":
			req.Host = val
			continue
		case "Transfer-Encoding":
			return errLeanRequest
		case "Content-Length":
			if bodyLen, err = strconv.ParseInt(val, 10, 64); err != nil || bodyLen < 0 {
				return errLeanRequest
			}
		case "Connection":
			switch {
			case strings.EqualFold(val, "close"):
				req.Close = true
			case strings.EqualFold(val, "keep-alive"):
				req.Close = false
			}
		}
		req.Header[key] = append(req.Header[key], val)
	}
	req.ContentLength, req.Body = bodyLen, http.NoBody
	if bodyLen > 0 {
		if _, err := io.CopyN(io.Discard, br, bodyLen); err != nil {
			return err
		}
	}
	return nil
}

// setLeanURL sets u from a request target in origin form (/path?query).
// A target with escapes (%) goes through url.ParseRequestURI, for the same
// Path and RawPath as net/http's.
func setLeanURL(u *url.URL, target []byte) error {
	if len(target) == 0 || target[0] != '/' {
		return errLeanRequest
	}
	if bytes.IndexByte(target, '%') >= 0 {
		p, err := url.ParseRequestURI(string(target))
		if err != nil {
			return errLeanRequest
		}
		*u = *p
		return nil
	}
	path, query, _ := bytes.Cut(target, []byte{'?'})
	if string(path) != u.Path || u.RawPath != "" {
		*u = url.URL{Path: string(path)}
	}
	u.RawQuery = ""
	if len(query) > 0 {
		u.RawQuery = string(query)
	}
	return nil
}

// readLine returns the next line without its CRLF (valid until the next
// read); a line longer than the buffer (4 KiB) is refused.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errLeanRequest
		}
		return nil, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
	return line, nil
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
