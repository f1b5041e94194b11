# runnerd — build, test, lint, regenerate protobuf, benchmark.
GO       ?= go
BIN      := bin
TAGS     := ferretdb_no_postgresql
# The version `runnerd version` prints: git describe where there is a git
# checkout, else "dev".
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
IMAGE    ?= runnerd:$(VERSION)
TEST_TIMEOUT ?= 9m
# staticcheck from PATH, else where `go install` puts it.
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)

.PHONY: all build dev test lint proto bench image chaos clean

all: build

build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The main job on the embedded default: embedded NATS, MongoDB-wire and S3
# servers plus the supervisor, in one process.
dev: build
	$(BIN)/runnerd dev

test: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -timeout $(TEST_TIMEOUT) ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags '$(TAGS) chaos' ./chaos/...
	@if [ -x "$(STATICCHECK)" ]; then \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags '$(TAGS)' ./... && \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags '$(TAGS) chaos' ./chaos/...; \
	else echo "staticcheck not installed; skipped (.ci/run installs it)"; fi

proto:
	scripts/gen-proto.sh

# Micro-benchmarks (proto, store) at the default benchtime; the macro ones
# of ./bench do a fixed number of runs each, so they run once (-benchtime 1x).
# Figures: docs/benchmarks.md.
bench: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchmem $$($(GO) list -tags '$(TAGS)' ./... | grep -v '/bench$$')
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchtime 1x -timeout 20m ./bench/

# Reliability suites (chaos, fencing, dependency faults, misbehaving
# workflows, bad input): real processes and signals, 5-20 minutes, and
# they take the machine. Not part of `make test`.
chaos: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS) chaos' -timeout 60m -v ./chaos/

# The container image (Dockerfile): runnerd and runexec, runnerd serve as
# the default command. Needs a Docker engine.
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf $(BIN)
