package webauth

import (
	"net/http"
	"testing"

	"github.com/dirsyncd/dirsyncd/config"
)

// TestDefaultClientHasTimeout: without a client of its own the provider
// must not use http.DefaultClient (no timeout), or a hanging identity
// provider holds sign-ins and bearer checks indefinitely.
func TestDefaultClientHasTimeout(t *testing.T) {
	p := New(config.OIDCConfig{Issuer: "https://idp.example", ClientID: "d"}, "https://dirsyncd.example/ui/callback", nil)
	if p.client == http.DefaultClient || p.client.Timeout != DefaultHTTPTimeout || DefaultHTTPTimeout <= 0 {
		t.Fatalf("client %p timeout %v", p.client, p.client.Timeout)
	}
}
