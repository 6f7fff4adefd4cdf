package webauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/webauth/oidctest"
)

func keysProvider(t *testing.T) (*oidctest.Issuer, *Provider, *time.Time) {
	is := oidctest.New(t, "dirsyncd")
	p := New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "email"}, "http://127.0.0.1:1/ui/callback", nil)
	now := time.Now()
	p.now = func() time.Time { return now }
	return is, p, &now
}

// TestForgedTokensDoNotFetchKeysEachTime: tokens signed with a key the
// issuer never published are refused from the keys held; the issuer's keys
// are fetched again at most once per keyRefetchEvery however many arrive
// (go-oidc's RemoteKeySet fetched once per such token).
func TestForgedTokensDoNotFetchKeysEachTime(t *testing.T) {
	is, p, now := keysProvider(t)
	ctx := context.Background()
	if _, err := p.VerifyToken(ctx, is.Token(map[string]any{"email": "a@firm.example"})); err != nil {
		t.Fatal(err)
	}
	if n := is.KeyFetches(); n != 1 {
		t.Fatalf("%d key fetches after the first token, want 1", n)
	}
	for range 50 {
		if _, err := p.VerifyToken(ctx, is.ForeignToken(map[string]any{"email": "a@firm.example"})); !errors.Is(err, ErrInvalid) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if n := is.KeyFetches(); n != 1 {
		t.Fatalf("%d key fetches after 50 forged tokens within %v, want 1", n, keyRefetchEvery)
	}
	*now = now.Add(keyRefetchEvery)
	for range 50 {
		_, _ = p.VerifyToken(ctx, is.ForeignToken(map[string]any{"email": "a@firm.example"}))
	}
	if n := is.KeyFetches(); n != 2 {
		t.Fatalf("%d key fetches once %v had passed, want 2", n, keyRefetchEvery)
	}
	// Good tokens still verify, without fetching.
	if _, err := p.VerifyToken(ctx, is.Token(map[string]any{"email": "a@firm.example"})); err != nil || is.KeyFetches() != 2 {
		t.Fatalf("good token: %v, %d fetches", err, is.KeyFetches())
	}
}

// TestRotatedKeyAcceptedAfterRefetch: a token signed with a key published
// after the last fetch verifies once keyRefetchEvery has passed (at once
// when the keys were never fetched), and the old key keeps working.
func TestRotatedKeyAcceptedAfterRefetch(t *testing.T) {
	is, p, now := keysProvider(t)
	ctx := context.Background()
	old := is.Token(map[string]any{"email": "a@firm.example"})
	if _, err := p.VerifyToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := is.Rotate(); err != nil {
		t.Fatal(err)
	}
	rotated := is.Token(map[string]any{"email": "a@firm.example"})
	if _, err := p.VerifyToken(ctx, rotated); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token of the new key within %v of the last fetch: %v", keyRefetchEvery, err)
	}
	*now = now.Add(keyRefetchEvery)
	if _, err := p.VerifyToken(ctx, rotated); err != nil {
		t.Fatalf("new key after %v: %v", keyRefetchEvery, err)
	}
	if _, err := p.VerifyToken(ctx, old); err != nil {
		t.Fatalf("old key, still published: %v", err)
	}
	if n := is.KeyFetches(); n != 2 {
		t.Fatalf("%d key fetches, want 2", n)
	}
	// A fresh provider meets the new key on its first fetch.
	p2 := New(config.OIDCConfig{Issuer: is.URL, ClientID: "dirsyncd", UserClaim: "email"}, "http://127.0.0.1:1/ui/callback", nil)
	if _, err := p2.VerifyToken(ctx, is.Token(map[string]any{"email": "b@firm.example"})); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledCallerDoesNotSpoilKeyFetch: the first token's caller giving
// up does not leave the keys unfetched (and every token refused) until the
// next fetch is due.
func TestCancelledCallerDoesNotSpoilKeyFetch(t *testing.T) {
	is, p, _ := keysProvider(t)
	if err := p.init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = p.VerifyToken(ctx, is.ForeignToken(map[string]any{"email": "a@firm.example"}))
	if _, err := p.VerifyToken(context.Background(), is.Token(map[string]any{"email": "a@firm.example"})); err != nil {
		t.Fatalf("a good token after a cancelled first fetch: %v", err)
	}
}
