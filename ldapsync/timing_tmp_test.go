package ldapsync

import (
	"testing"
	"time"

	"github.com/dirsyncd/dirsyncd/internal/testenv"
)

func TestTimingTmp(t *testing.T) {
	t0 := time.Now()
	ldif := genDirectory(20000, 2, func(i int) []int { return []int{0} })
	t.Logf("gen %v", time.Since(t0)); t0 = time.Now()
	e := newEnv(t, testenv.SlapdOptions{LDIF: ldif}, nil)
	t.Logf("slapd %v", time.Since(t0)); t0 = time.Now()
	e.src.PageSize, e.src.BatchSize = 1000, 1000
	e.hook = func(kind string, page int) { t.Logf("%s page %d at %v", kind, page, time.Since(t0)) }
	e.mustRun(RunOptions{})
	t.Logf("full1 %v", time.Since(t0)); t0 = time.Now()
	e.hook = func(kind string, page int) { t.Logf("2: %s page %d at %v", kind, page, time.Since(t0)) }
	e.mustRun(RunOptions{Full: true})
	t.Logf("full2 %v", time.Since(t0)); t0 = time.Now()
}
