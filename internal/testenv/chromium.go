package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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

// Browser starts headless Chromium (Chromium(t), a fresh profile, the
// flags above) and returns a chromedp context for it; everything stops
// when the test ends. Each action should be bounded by the returned
// context's deadline (3 minutes: generous for -race on a shared machine).
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("testenv: start chromium %s: %v", path, err)
	}
	return ctx
}

// Screenshot saves a full-page PNG of the browser's page as an artefact.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("testenv: screenshot: %v", err)
	}
	p := filepath.Join(ArtifactDir(t), name+".png")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}
