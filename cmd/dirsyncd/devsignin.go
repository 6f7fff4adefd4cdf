package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"go.uber.org/zap"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/webauth/oidctest"
)

// devSupportGroup is the "groups" value the development issuer gives to
// whoever ticks "agency support staff" on its sign-in page.
const devSupportGroup = "dirsyncd-dev-support"

// startDevIssuer starts the local sign-in issuer when oidc.devIssuer is set
// (validated to be development only) and points the oidc section at it:
// `make run` then signs people in to /ui with no identity provider, the
// same code path (authorization code + PKCE, signed ID token, session
// cookie) as a real one. Signing in as an e-mail of a dirsyncd user gives
// that user's rights (a Firm User Manager sees their firm); ticking
// "support staff" gives the agency's support rights. The session key is
// random per start, so sessions end with the process.
func (a *App) startDevIssuer() error {
	c := &a.Config.OIDC
	if !c.DevIssuer {
		return nil
	}
	is, err := oidctest.Start("dirsyncd-dev")
	if err != nil {
		return fmt.Errorf("dirsyncd: development sign-in: %w", err)
	}
	is.SupportGroup = devSupportGroup
	a.OnClose(func() error { is.Close(); return nil })
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("dirsyncd: development sign-in: session key: %w", err)
	}
	c.Issuer, c.ClientID = is.URL, is.ClientID
	c.SessionKey = config.NewSecret(hex.EncodeToString(key[:]))
	c.InsecureCookies = true // plain http on localhost
	c.SupportValues = append(c.SupportValues, devSupportGroup)
	a.Logger.Named("dirsyncd").Info("development sign-in issuer started (oidc.devIssuer)", zap.String("issuer", is.URL))
	return nil
}
