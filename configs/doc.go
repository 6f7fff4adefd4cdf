// Package configs holds dirsyncd's configuration files: dev.yaml (the
// embedded default used when neither --config nor DIRSYNCD_CONFIG names a
// file), dirsyncd.example.yaml (production, every core option documented),
// and the data files features load (role catalogue, mapping rules, demo
// data). configs_test.go loads and validates every YAML file here,
// recursively, each with the loader of its kind; a file no loader claims
// fails the test.
package configs
