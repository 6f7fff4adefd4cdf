package config

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Secret is a sensitive string. In YAML it is written as a plain value, as
// "env:NAME" (read from the environment) or "file:/path" (read from a file,
// trailing newline trimmed). Its String and MarshalYAML never reveal it, so
// a Secret printed or logged by mistake shows "[redacted]".
type Secret struct {
	ref      string // what the file said, e.g. "env:LDAP_PASSWORD"
	value    string
	set      bool
	resolved bool // value holds the secret (NewSecret, or after resolve)
}

// NewSecret returns a Secret holding v (for tests and generated tokens).
func NewSecret(v string) Secret { return Secret{ref: "value", value: v, set: v != "", resolved: true} }

// UnmarshalYAML keeps the reference; Resolve reads it.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	var v string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*s = Secret{ref: v, set: v != ""}
	return nil
}

// resolve reads the secret from where ref points.
func (s *Secret) resolve() error {
	if !s.set || s.resolved {
		return nil
	}
	switch {
	case strings.HasPrefix(s.ref, "env:"):
		name := strings.TrimPrefix(s.ref, "env:")
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return fmt.Errorf("environment variable %s is not set", name)
		}
		s.value = v
	case strings.HasPrefix(s.ref, "file:"):
		path := strings.TrimPrefix(s.ref, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read secret file %s: %w", path, err)
		}
		s.value = strings.TrimRight(string(b), "\r\n")
	default:
		s.value = s.ref
		s.ref = "value"
	}
	s.resolved = true
	return nil
}

// Value returns the secret itself. Never log it.
func (s Secret) Value() string { return s.value }

// IsSet reports whether a value was configured.
func (s Secret) IsSet() bool { return s.set }

// String never reveals the value.
func (s Secret) String() string { return "[redacted]" }

// GoString never reveals the value.
func (s Secret) GoString() string { return "[redacted]" }

// MarshalYAML never reveals the value.
func (s Secret) MarshalYAML() (any, error) { return "[redacted]", nil }

// MarshalJSON never reveals the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }

// Source says where the secret comes from without revealing it: "env:NAME",
// "file:/path", or "value" for a literal.
func (s Secret) Source() string {
	if strings.HasPrefix(s.ref, "env:") || strings.HasPrefix(s.ref, "file:") {
		return s.ref
	}
	return "value"
}
