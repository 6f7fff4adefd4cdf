package cwafake

import (
	"bufio"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestReadLeanRequestMatchesNetHTTP: for the requests a CWA client sends
// (and a few it might), readLeanRequest fills the fields the Handler reads
// exactly as net/http's ReadRequest does, reusing one request value for a
// sequence of requests on one connection; what it does not take fails.
func TestReadLeanRequestMatchesNetHTTP(t *testing.T) {
	reqs := []string{
		"GET /provider-offices/snapshot HTTP/1.1\r\nHost: cwa.example\r\nX-Authorization: k\r\nAccept: application/json\r\n\r\n",
		"GET /provider-users/JSMITH/provider-offices HTTP/1.1\r\nHost: cwa.example\r\nx-authorization:  k2 \r\n\r\n",
		"GET /provider-users/exists?userEmail=J.Smith%40smith.example HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /provider-users/a%2Fb/provider-offices HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /provider-users/x/provider-offices?a=1&a=2 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
		"POST /provider-offices/snapshot HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
		"GET /provider-firms/3856/provider-users HTTP/1.1\n\n", // bare LF, no Host
	}
	lean := bufio.NewReader(strings.NewReader(strings.Join(reqs, "")))
	req := &http.Request{Header: http.Header{}, URL: &url.URL{}}
	for i, raw := range reqs {
		want, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("%d: net/http: %v", i, err)
		}
		if err := readLeanRequest(lean, req); err != nil {
			t.Fatalf("%d: lean: %v", i, err)
		}
		type fields struct {
			Method, Proto, Host, Path, RawPath, RawQuery string
			Close                                        bool
			Header                                       http.Header
			Query                                        url.Values
			ContentLength                                int64
		}
		got := fields{req.Method, req.Proto, req.Host, req.URL.Path, req.URL.RawPath, req.URL.RawQuery, req.Close, req.Header, req.URL.Query(), req.ContentLength}
		exp := fields{want.Method, want.Proto, want.Host, want.URL.Path, want.URL.RawPath, want.URL.RawQuery, want.Close, want.Header, want.URL.Query(), want.ContentLength}
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("%d: lean %+v\n net/http %+v", i, got, exp)
		}
	}
	for _, bad := range []string{
		"GET /x HTTP/2.0\r\n\r\n",
		"GET x HTTP/1.1\r\n\r\n",
		"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"GET /x HTTP/1.1\r\nno colon\r\n\r\n",
		"GET /x HTTP/1.1\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n",
		"GARBAGE\r\n\r\n",
	} {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{}}
		if err := readLeanRequest(bufio.NewReaderSize(strings.NewReader(bad), 4096), r); err == nil {
			t.Errorf("%.40q: accepted", bad)
		}
	}
}
