package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCWADefaultsAndSecret(t *testing.T) {
	t.Setenv("TEST_CWA_KEY", "k-123")
	c, err := Parse([]byte("cwa:\n  baseURL: https://pda.example/api\n  apiKey: env:TEST_CWA_KEY\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := c.CWA
	if !w.Enabled() || w.APIKey.Value() != "k-123" || w.APIKeyHeader != "X-Authorization" || w.Timeout != 30*time.Second ||
		w.MaxAttempts != 4 || w.Backoff != 500*time.Millisecond || w.MaxBackoff != 30*time.Second || w.MaxRetryAfter != 2*time.Minute ||
		w.Concurrency != 16 || w.ShrinkGuard() != 0.5 || w.MaxBodyBytes != 256<<20 || w.RunTimeout != 15*time.Minute {
		t.Fatalf("defaults %+v", w)
	}
	if s := w.APIKey.String(); strings.Contains(s, "k-123") {
		t.Fatal("the API key prints")
	}
	off, err := Parse([]byte("env: development\n"))
	if err != nil || off.CWA.Enabled() {
		t.Fatalf("no cwa section: enabled=%v err=%v", off.CWA.Enabled(), err)
	}
}

func TestCWAFake(t *testing.T) {
	c, err := Parse([]byte("env: development\ncwa:\n  fake: {enabled: true, fixture: configs/demo/cwa.json}\n  syncAtStart: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.CWA.Enabled() || c.CWA.Fake.Listen != "127.0.0.1:0" {
		t.Fatalf("fake %+v", c.CWA.Fake)
	}
}

func TestCWAValidateReportsEveryProblem(t *testing.T) {
	doc := `cwa:
  baseURL: ftp://pda
  apiKeyHeader: "X Key"
  maxAttempts: 50
  backoff: 1m
  maxBackoff: 1s
  concurrency: 1000
  minFraction: 1.5
  timeout: -1s
  fake: {fixture: x.json}
`
	_, err := Parse([]byte(doc))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err %v", err)
	}
	for _, want := range []string{"cwa.baseURL", "cwa.apiKey: is required", "cwa.apiKeyHeader", "cwa.maxAttempts", "cwa.backoff: must not exceed",
		"cwa.concurrency", "cwa.minFraction", "cwa.timeout", "cwa.fake.enabled"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
	_, err = Parse([]byte("cwa:\n  syncAtStart: true\n"))
	if err == nil || !strings.Contains(err.Error(), "cwa.syncAtStart") {
		t.Errorf("syncAtStart without CWA: %v", err)
	}
	_, err = Parse([]byte("cwa:\n  fake: {enabled: true}\n"))
	if err == nil || !strings.Contains(err.Error(), "cwa.fake.fixture") {
		t.Errorf("fake without fixture: %v", err)
	}
}

// TestCWAMinFraction: omitted means 0.5, an explicit 0 switches the shrink
// guard off, values outside 0..1 are refused with the key named.
func TestCWAMinFraction(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       float64
		wantErr    string
	}{
		{"omitted", "", 0.5, ""},
		{"explicit half", "  minFraction: 0.5\n", 0.5, ""},
		{"explicit zero is off", "  minFraction: 0\n", 0, ""},
		{"one", "  minFraction: 1\n", 1, ""},
		{"negative", "  minFraction: -0.1\n", 0, "cwa.minFraction: must be between 0 and 1 (0 switches the shrink guard off), not -0.1"},
		{"above one", "  minFraction: 1.5\n", 0, "cwa.minFraction: must be between 0 and 1 (0 switches the shrink guard off), not 1.5"},
		{"not a number", "  minFraction: .nan\n", 0, "cwa.minFraction: must be between 0 and 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("cwa:\n  baseURL: https://pda.example/api\n  apiKey: k\n" + tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.CWA.ShrinkGuard(); got != tc.want {
				t.Errorf("ShrinkGuard() = %g, want %g", got, tc.want)
			}
		})
	}
}
