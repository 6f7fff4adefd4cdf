package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validDoc = `
env: development
store:
  driver: sqlite
tokens:
  - name: ops
    token: s3cret
    scopes: [admin:read]
scheduler:
  jobs:
    - name: nightly
      kind: reconcile
      schedule: "0 2 * * *"
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"store.path", c.Store.Path, DefaultSQLitePath},
		{"server.listen", c.Server.Listen, DefaultListen},
		{"shutdown", c.Server.ShutdownTimeout, 30 * time.Second},
		{"maxBody", c.Server.MaxBodyBytes, int64(1 << 20)},
		{"leaseTTL", c.Scheduler.LeaseTTL, 30 * time.Second},
		{"connectTimeout", c.Store.ConnectTimeout, 30 * time.Second},
		{"log.level", c.Log.Level, "info"},
		{"token", c.Tokens[0].Token.Value(), "s3cret"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if c2, err := Parse([]byte("{}")); err != nil || c2.Env != EnvProduction {
		t.Fatalf("empty config: env=%v err=%v", c2, err)
	}
}

func TestProblems(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	cases := []struct {
		name string
		doc  string
		want string // substring of one problem
	}{
		{"unknown top-level key", "bogus: 1", "field bogus not found"},
		{"unknown nested key", "server:\n  lisen: x", "field lisen not found"},
		{"wrong type", "server:\n  maxBodyBytes: lots", "cannot unmarshal"},
		{"bad env", "env: staging", "env: must be"},
		{"bad log level", "log:\n  level: loud", "log.level"},
		{"bad driver", "store:\n  driver: mysql", "store.driver"},
		{"postgres without dsn", "store:\n  driver: postgres", "store.dsn: is required"},
		{"dsn with sqlite", "store:\n  dsn: postgres://x", "store.dsn: is only used"},
		{"unset env secret", "store:\n  driver: postgres\n  dsn: env:DIRSYNCD_TEST_SURELY_UNSET", "store.dsn: environment variable DIRSYNCD_TEST_SURELY_UNSET is not set"},
		{"missing secret file", "store:\n  driver: postgres\n  dsn: file:/nonexistent/dsn", "store.dsn: read secret file"},
		{"bad listen", "server:\n  listen: localhost", "server.listen"},
		{"bad public url", "server:\n  publicURL: example.org/scim", "server.publicURL"},
		{"negative shutdown", "server:\n  shutdownTimeout: -1s", "server.shutdownTimeout"},
		{"token without name", "tokens:\n  - token: x\n    scopes: [scim]", "tokens[0].name: is required"},
		{"duplicate token names", "tokens:\n  - {name: a, token: x, scopes: [scim]}\n  - {name: a, token: y, scopes: [scim]}", "tokens[1].name: \"a\" is also"},
		{"same token twice", "tokens:\n  - {name: a, token: x, scopes: [scim]}\n  - {name: b, token: x, scopes: [admin:write]}", "tokens[1]: is the same token as tokens[0]"},
		{"token and its sha256", "tokens:\n  - {name: a, token: x, scopes: [scim]}\n  - {name: b, sha256: 2D711642B726B04401627CA9FBAC32F5C8530FB1903CC4DB02258717921A4881, scopes: [admin:write]}", "tokens[1]: is the same token as tokens[0]"},
		{"unknown scope", "tokens:\n  - {name: a, token: x, scopes: [root]}", "tokens[0].scopes[0]: unknown scope \"root\""},
		{"no scope", "tokens:\n  - {name: a, token: x}", "tokens[0].scopes: needs at least one"},
		{"token and sha256", "tokens:\n  - {name: a, token: x, sha256: " + hash + ", scopes: [scim]}", "not both"},
		{"neither token nor sha256", "tokens:\n  - {name: a, scopes: [scim]}", "tokens[0]: set exactly one"},
		{"short sha256", "tokens:\n  - {name: a, sha256: abc, scopes: [scim]}", "tokens[0].sha256: must be 64"},
		{"dev token in production", "tokens:\n  - {name: a, token: x, dev: true, scopes: [scim]}", "tokens[0].dev"},
		{"short lease", "scheduler:\n  leaseTTL: 10ms", "scheduler.leaseTTL"},
		{"job without name", "scheduler:\n  jobs:\n    - {kind: reconcile}", "scheduler.jobs[0].name: is required"},
		{"duplicate job names", "scheduler:\n  jobs:\n    - {name: j, kind: reconcile}\n    - {name: j, kind: cwa}", "scheduler.jobs[1].name"},
		{"unknown kind", "scheduler:\n  jobs:\n    - {name: j, kind: backup}", "unknown kind \"backup\""},
		{"bad cron", "scheduler:\n  jobs:\n    - {name: j, kind: cwa, schedule: \"61 * * * *\"}", "scheduler.jobs[0].schedule"},
		{"cron with seconds", "scheduler:\n  jobs:\n    - {name: j, kind: cwa, schedule: \"0 0 2 * * *\"}", "scheduler.jobs[0].schedule"},
		{"time zone prefix", "scheduler:\n  jobs:\n    - {name: j, kind: cwa, schedule: \"CRON_TZ=Europe/London 0 2 * * *\"}", "schedules are UTC"},
		{"not yaml", "tokens: [", "yaml:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse: %v, want a ValidationError", err)
			}
			for _, p := range ve.Problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Fatalf("no problem contains %q; got:\n%s", c.want, strings.Join(ve.Problems, "\n"))
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	doc := `
env: staging
bogus: true
store:
  driver: postgres
server:
  listen: nope
tokens:
  - {name: a, token: x, scopes: [root]}
  - {name: a, scopes: [scim]}
scheduler:
  jobs:
    - {name: j, kind: backup, schedule: "not cron"}
`
	_, err := Parse([]byte(doc))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []string{"field bogus", "env:", "store.dsn", "server.listen", "tokens[0].scopes[0]", "tokens[1].name", "tokens[1]: set exactly one", "jobs[0].kind", "jobs[0].schedule"}
	for _, w := range want {
		found := false
		for _, p := range ve.Problems {
			found = found || strings.Contains(p, w)
		}
		if !found {
			t.Errorf("problem %q not reported; got:\n%s", w, ve.Error())
		}
	}
	if len(ve.Problems) < len(want) {
		t.Errorf("%d problems, want at least %d", len(ve.Problems), len(want))
	}
}

func TestSecretsResolved(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dsn")
	if err := os.WriteFile(file, []byte("postgres://from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DIRSYNCD_TEST_TOKEN", "from-env")
	doc := "store:\n  driver: postgres\n  dsn: file:" + file + "\ntokens:\n  - {name: a, token: env:DIRSYNCD_TEST_TOKEN, scopes: [scim]}\n"
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.DSN.Value() != "postgres://from-file" || c.Tokens[0].Token.Value() != "from-env" {
		t.Fatalf("dsn=%q token=%q", c.Store.DSN.Value(), c.Tokens[0].Token.Value())
	}
	if c.Tokens[0].Token.Source() != "env:DIRSYNCD_TEST_TOKEN" || c.Store.DSN.String() != "[redacted]" {
		t.Fatal("secret source or redaction wrong")
	}
}

func TestSecretNeverInProblems(t *testing.T) {
	// A literal secret in a broken section must not be echoed back.
	_, err := Parse([]byte("store:\n  dsn: postgres://user:hunter2@db/x\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

func TestDevToken(t *testing.T) {
	doc := "env: development\ntokens:\n  - {name: dev, token: env:DIRSYNCD_TEST_DEV_TOKEN, dev: true, scopes: [scim]}\n"
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Tokens[0].NeedsGeneratedToken() {
		t.Fatal("unset dev token should be generated")
	}
	t.Setenv("DIRSYNCD_TEST_DEV_TOKEN", "fixed")
	c, err = Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Tokens[0].NeedsGeneratedToken() || c.Tokens[0].Token.Value() != "fixed" {
		t.Fatal("dev token from env not used")
	}
}

func TestLoadNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("env: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != path || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || errors.As(err, &ve) {
		t.Fatalf("missing file: %v", err)
	}
}
