package webauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// keyRefetchEvery is the least time between two fetches of the issuer's
// keys. go-oidc's RemoteKeySet fetches them again for every token its
// cached keys do not verify, so anyone could make dirsyncd call the
// identity provider once per forged bearer token sent, without signing in.
// keySet answers such tokens from the cached keys between fetches. Issuers
// publish a new key well before they sign with it (Entra ID: weeks), so a
// token signed with a key newer than the last fetch waits at most this
// long.
const keyRefetchEvery = 30 * time.Second

// maxJWKS bounds the key set document read from the issuer.
const maxJWKS = 1 << 20

// keySet is an oidc.KeySet over the issuer's JWKS (jwks_uri), fetched on
// first use and again, at most once per keyRefetchEvery, when a token's
// signature fails against the keys held. Concurrent callers share one
// fetch. TestForgedTokensDoNotFetchKeysEachTime and
// TestRotatedKeyAcceptedAfterRefetch pin both halves.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    *oidc.StaticKeySet // nil until a fetch succeeded
	fetched time.Time          // last fetch attempt
	lastErr error              // its error, if it failed
}

var _ oidc.KeySet = (*keySet)(nil)

func newKeySet(url string, client *http.Client, now func() time.Time) *keySet {
	return &keySet{url: url, client: client, now: now}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	k.mu.Lock()
	held := k.keys
	k.mu.Unlock()
	if held != nil {
		if payload, err := held.VerifySignature(ctx, jwt); err == nil {
			return payload, nil
		}
	}
	fresh, err := k.refresh(ctx, held)
	if err != nil {
		return nil, err
	}
	if fresh == held {
		return nil, errors.New("webauth: no key of the issuer verifies the token's signature")
	}
	return fresh.VerifySignature(ctx, jwt)
}

// refresh fetches the keys unless the last fetch was less than
// keyRefetchEvery ago; it returns the keys held afterwards (held itself
// when nothing new was fetched).
func (k *keySet) refresh(ctx context.Context, held *oidc.StaticKeySet) (*oidc.StaticKeySet, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != held && k.keys != nil {
		return k.keys, nil // another caller fetched while this one waited
	}
	if !k.fetched.IsZero() && k.now().Before(k.fetched.Add(keyRefetchEvery)) {
		if k.keys == nil {
			return nil, k.lastErr
		}
		return k.keys, nil
	}
	k.fetched = k.now()
	// Not the caller's cancellation: one that gave up (or a client that
	// hung up on purpose) would otherwise leave every token unverifiable
	// until the next fetch is due. The client's timeout bounds the fetch.
	keys, err := k.fetch(context.WithoutCancel(ctx))
	if err != nil {
		k.lastErr = err
		if k.keys == nil {
			return nil, err
		}
		return k.keys, nil // keep verifying with the keys held
	}
	k.keys, k.lastErr = keys, nil
	return keys, nil
}

func (k *keySet) fetch(ctx context.Context) (*oidc.StaticKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("webauth: keys: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("webauth: fetch keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("webauth: fetch keys: %s answered %s", k.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("webauth: fetch keys: %w", err)
	}
	if len(body) > maxJWKS {
		return nil, fmt.Errorf("webauth: fetch keys: the key set is larger than %d bytes", maxJWKS)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("webauth: fetch keys: %w", err)
	}
	var pubs []crypto.PublicKey
	for _, key := range set.Keys {
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			pubs = append(pubs, key.Key)
		}
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("webauth: fetch keys: %s holds no signing key", k.url)
	}
	return &oidc.StaticKeySet{PublicKeys: pubs}, nil
}
