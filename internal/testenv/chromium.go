package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Chromium returns the path of the headless browser for browser tests:
// DIRSYNCD_TEST_CHROMIUM (exported by scripts/test-env.sh, which installs
// Debian's chromium when missing), else `chromium` on PATH. Missing: a
// skip locally, a failure under CI. Run it with --headless --no-sandbox
// --disable-background-networking.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DIRSYNCD_TEST_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Missing(t, "DIRSYNCD_TEST_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "chromium not found (DIRSYNCD_TEST_CHROMIUM unset, no chromium on PATH)")
	return ""
}

// ArtifactDir returns the directory for a test's artefacts (screenshots):
// DIRSYNCD_TEST_ARTIFACTS/<test name> when set, else
// <repo>/var/test-artifacts/<test name> (ignored by git), created.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DIRSYNCD_TEST_ARTIFACTS")
	if base == "" {
		dir, _ := os.Getwd()
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				base = filepath.Join(d, "var", "test-artifacts")
				break
			}
			if filepath.Dir(d) == d {
				base = filepath.Join(os.TempDir(), "dirsyncd-test-artifacts")
				break
			}
		}
	}
	out := filepath.Join(base, filepath.Clean("/" + t.Name())[1:])
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatalf("testenv: artefact dir: %v", err)
	}
	return out
}
