package cwasync_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/cwasync"
	"github.com/dirsyncd/dirsyncd/cwasync/cwafake"
)

// TestClientCancelEndsRequestInFlight: fasthttp has no contexts; a caller
// whose context ends while its request waits on the server gets the
// context's error at once (its connection is closed), not after the
// per-attempt timeout, and the client serves the next caller normally.
func TestClientCancelEndsRequestInFlight(t *testing.T) {
	h, srv := fakeServer(t)
	h.Inject(cwafake.Fault{Kind: cwafake.FaultLatency, Latency: time.Hour, Times: 1})
	c, sl := newClient(t, srv.URL, func(o *cwasync.ClientOptions) { o.Timeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Snapshot(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("returned after %s: the cancel did not end the request in flight", d)
	}
	if len(sl.get()) != 0 {
		t.Errorf("retried after the cancel: sleeps %v", sl.get())
	}
	if rows, err := c.Snapshot(context.Background()); err != nil || len(rows) != 4 {
		t.Fatalf("next request: %d rows, %v", len(rows), err)
	}
}

// TestClientUsesProxyFromEnvironment: HTTP_PROXY is honoured as net/http
// honours it (a CONNECT tunnel through the proxy), and NO_PROXY exempts a
// host; the API key goes through the tunnel, never to the proxy itself.
func TestClientUsesProxyFromEnvironment(t *testing.T) {
	_, srv := fakeServer(t)
	target := strings.TrimPrefix(srv.URL, "http://")
	var tunnels atomic.Int32
	var sawKey atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect || req.Host != "cwa.invalid:80" {
					_, _ = io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\n\r\n")
					return
				}
				if req.Header.Get("X-Authorization") != "" {
					sawKey.Store(true)
				}
				up, err := net.Dial("tcp", target) // the proxy resolves cwa.invalid to the fake
				if err != nil {
					return
				}
				defer up.Close()
				tunnels.Add(1)
				_, _ = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { _, _ = io.Copy(up, br) }()
				_, _ = io.Copy(conn, up)
			}()
		}
	}()
	t.Setenv("HTTP_PROXY", "http://"+ln.Addr().String())
	t.Setenv("NO_PROXY", "")
	c, _ := newClient(t, "http://cwa.invalid", nil)
	if rows, err := c.Snapshot(context.Background()); err != nil || len(rows) != 4 {
		t.Fatalf("through the proxy: %d rows, %v", len(rows), err)
	}
	if tunnels.Load() != 1 || sawKey.Load() {
		t.Errorf("tunnels %d (want 1), API key sent to the proxy: %v", tunnels.Load(), sawKey.Load())
	}
	t.Setenv("NO_PROXY", "cwa.invalid")
	c, _ = newClient(t, "http://cwa.invalid", func(o *cwasync.ClientOptions) { o.MaxAttempts = 1 })
	if _, err := c.Snapshot(context.Background()); err == nil {
		t.Fatal("NO_PROXY host: want a direct dial of cwa.invalid to fail")
	}
	if tunnels.Load() != 1 {
		t.Errorf("NO_PROXY host went through the proxy")
	}
}
