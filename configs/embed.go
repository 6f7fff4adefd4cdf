package configs

import _ "embed"

// DevYAML is configs/dev.yaml, the configuration `dirsyncd` uses when no
// file is named: SQLite under ./var/, 127.0.0.1:8080, env development and a
// development token.
//
//go:embed dev.yaml
var DevYAML []byte
