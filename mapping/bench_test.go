package mapping

import (
	"path/filepath"
	"testing"
)

// BenchmarkEvaluate: one user in 3 groups against the launch rules.
func BenchmarkEvaluate(b *testing.B) {
	cat, err := LoadCatalogue(filepath.Join("..", "configs", "catalogue.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	rs, err := LoadRules(filepath.Join("..", "configs", "rules.yaml"), cat)
	if err != nil {
		b.Fatal(err)
	}
	e := NewEngine(cat, rs)
	f := fixture()
	f.Groups = []GroupFact{group("LAA Crime"), group("LAA CCMS Case Workers"), group("Team X", "LAA Y")}
	b.ReportAllocs()
	for b.Loop() {
		if r := e.Evaluate(&f); len(r.Grants) != 3 {
			b.Fatalf("%d grants", len(r.Grants))
		}
	}
}
