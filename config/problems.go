package config

import (
	"fmt"
	"strings"
)

// Problems collects every validation problem so they are reported at once.
type Problems struct{ list []string }

// Addf records one problem; path names the offending option (e.g. "ldap.sources[0].url").
func (p *Problems) Addf(path, format string, args ...any) {
	p.list = append(p.list, path+": "+fmt.Sprintf(format, args...))
}

// Err returns nil when there is no problem, else a *ValidationError.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: append([]string(nil), p.list...)}
}

// List returns the problems recorded so far.
func (p *Problems) List() []string { return append([]string(nil), p.list...) }

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	File     string // the file checked, when loaded from one
	Problems []string
}

func (e *ValidationError) Error() string {
	where := "config"
	if e.File != "" {
		where = "config " + e.File
	}
	return fmt.Sprintf("%s: %d problem(s):\n  - %s", where, len(e.Problems), strings.Join(e.Problems, "\n  - "))
}
