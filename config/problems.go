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

// ValidationError lists every problem found in a configuration.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("config: %d problem(s):\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}
