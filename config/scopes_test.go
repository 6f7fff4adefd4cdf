package config_test

import (
	"slices"
	"testing"

	"github.com/dirsyncd/dirsyncd/auth"
	"github.com/dirsyncd/dirsyncd/config"
)

func TestScopesMatchAuth(t *testing.T) {
	if !slices.Equal(config.KnownScopes, auth.KnownScopes) {
		t.Fatalf("config.KnownScopes %v != auth.KnownScopes %v", config.KnownScopes, auth.KnownScopes)
	}
}
