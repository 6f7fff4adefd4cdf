package configs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dirsyncd/dirsyncd/config"
	"github.com/dirsyncd/dirsyncd/configs"
	"github.com/dirsyncd/dirsyncd/mapping"
)

// loaders validates each YAML file under configs/ with the loader of its
// kind. Every .yaml/.yml file must match one entry (the first that
// matches, by path relative to configs/ and path.Match syntax); a new kind
// of file needs a new entry here. Nothing is excluded: demo data is
// validated like the rest. (If a folder of deliberately invalid fixtures is
// ever needed, add it to skipDirs with a comment saying why.)
var loaders = []struct {
	pattern string
	load    func(t *testing.T, path string) error
}{
	{"dev.yaml", loadConfig},
	{"dirsyncd*.yaml", loadConfig},
	{"catalogue.yaml", func(t *testing.T, path string) error {
		_, err := mapping.LoadCatalogue(path)
		return err
	}},
	{"rules.yaml", func(t *testing.T, path string) error {
		cat, err := mapping.LoadCatalogue("catalogue.yaml")
		if err != nil {
			return err
		}
		_, err = mapping.LoadRules(path, cat)
		return err
	}},
}

// skipDirs lists folders of fixture data that are not loadable on their
// own, each with the reason. Empty: every file is checked.
var skipDirs = map[string]string{}

var envRef = regexp.MustCompile(`env:([A-Za-z_][A-Za-z0-9_]*)`)

// loadConfig loads a daemon configuration with every environment variable
// it references set to a placeholder (the real values live in the
// deployment, not the repository).
func loadConfig(t *testing.T, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, m := range envRef.FindAllStringSubmatch(string(b), -1) {
		t.Setenv(m[1], "placeholder-"+strings.ToLower(m[1]))
	}
	_, err = config.Load(path)
	return err
}

func TestEveryYAMLFileLoads(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if _, skip := skipDirs[path]; skip {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		n++
		t.Run(path, func(t *testing.T) {
			for _, l := range loaders {
				if ok, _ := filepath.Match(l.pattern, path); ok {
					if err := l.load(t, path); err != nil {
						t.Fatalf("%s: %v", path, err)
					}
					return
				}
			}
			t.Fatalf("%s: no loader validates this file; add one to loaders in configs/configs_test.go", path)
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("only %d YAML files found", n)
	}
}

func TestEmbeddedDevConfig(t *testing.T) {
	t.Setenv("DIRSYNCD_DEV_TOKEN", "")
	c, err := config.Parse(configs.DevYAML)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Development() || c.Store.Driver != "sqlite" || !strings.HasPrefix(c.Store.Path, "./var/") || c.Server.Listen != "127.0.0.1:8080" {
		t.Fatalf("dev config: env %s store %s %s listen %s", c.Env, c.Store.Driver, c.Store.Path, c.Server.Listen)
	}
	var dev *config.TokenConfig
	for i := range c.Tokens {
		if c.Tokens[i].Dev {
			dev = &c.Tokens[i]
		}
	}
	if dev == nil || !dev.NeedsGeneratedToken() {
		t.Fatal("dev.yaml needs a development token generated when DIRSYNCD_DEV_TOKEN is unset")
	}
	for _, s := range []string{"scim", "admin:read", "admin:write", "support"} {
		if !strings.Contains(strings.Join(dev.Scopes, " "), s) {
			t.Errorf("dev token lacks scope %s", s)
		}
	}
}

func TestExampleIsProduction(t *testing.T) {
	for _, m := range envRef.FindAllStringSubmatch(mustRead(t, "dirsyncd.example.yaml"), -1) {
		t.Setenv(m[1], "x-"+m[1]) // distinct: two clients never share a token
	}
	c, err := config.Load("dirsyncd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Development() || c.Store.Driver != "postgres" || c.Store.DSN.Source() != "env:DIRSYNCD_PG_DSN" {
		t.Fatalf("example: env %s driver %s dsn from %s", c.Env, c.Store.Driver, c.Store.DSN.Source())
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
