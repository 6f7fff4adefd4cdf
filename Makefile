# dirsyncd — `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
export PATH := $(PATH):/usr/local/go/bin

GO        ?= go
BIN       := bin/dirsyncd
CONFIG    ?= configs/dev.yaml
PKG       ?= ./...
TESTFLAGS ?=
BENCHTIME ?= 200ms
BENCH     ?= .
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help build run test bench bench-scim bench-ldap bench-cwa lint fmt migrate clean

help: ## list the targets
	@echo "Usage: make TARGET [VAR=value]"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: CONFIG=$(CONFIG) PKG=$(PKG) TESTFLAGS=$(TESTFLAGS) BENCH=$(BENCH) BENCHTIME=$(BENCHTIME)"

build: ## build bin/dirsyncd (static, CGO_ENABLED=0, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/dirsyncd

run: build ## build, then serve with configs/dev.yaml (SQLite under ./var, dev token printed)
	mkdir -p var
	./$(BIN) serve --config $(CONFIG)

test: ## all tests (-race) with real PostgreSQL and OpenLDAP, started and stopped by scripts/test-env.sh
	bash scripts/test-env.sh test $(TESTFLAGS) $(PKG)

bench: ## Go benchmarks (short benchtime, sized for 2 cores), with the test services up
	bash scripts/test-env.sh run -- $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count=1 -timeout 30m $(PKG)

bench-scim: ## SCIM load benchmark (scripts/bench-scim.sh)
	@$(call bench_script,scim)

bench-ldap: ## LDAP sync benchmark (scripts/bench-ldap.sh)
	@$(call bench_script,ldap)

bench-cwa: ## CWA sync benchmark (scripts/bench-cwa.sh)
	@$(call bench_script,cwa)

# bench_script runs scripts/bench-NAME.sh with the test services up, or fails clearly when it is missing.
define bench_script
if [ ! -f scripts/bench-$(1).sh ]; then \
	echo "make bench-$(1): scripts/bench-$(1).sh does not exist yet (the $(1) feature provides it)" >&2; \
	exit 1; \
fi; \
bash scripts/test-env.sh run -- bash scripts/bench-$(1).sh
endef

lint: ## go vet + gofmt check (fails on unformatted files)
	$(GO) vet $(PKG)
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files are not formatted (run make fmt):" >&2; \
		echo "$$unformatted" >&2; \
		exit 1; \
	fi

fmt: ## gofmt -w every Go file
	gofmt -w .

migrate: build ## apply database migrations for CONFIG
	./$(BIN) migrate --config $(CONFIG)

clean: ## remove bin/ and benchmark outputs
	rm -rf bin
