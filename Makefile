# runnerd — build, test, lint, regenerate protobuf, benchmark.
GO       ?= go
BIN      := bin
TAGS     := ferretdb_no_postgresql
# The version `runnerd version` prints: git describe where there is a git
# checkout, else "dev".
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# The image's tag: one committed place (IMAGE_TAG), which
# deploy/kubernetes names too (a test keeps them in agreement); bump it
# with a release.
IMAGE_TAG := $(shell cat IMAGE_TAG)
IMAGE    ?= runnerd:$(IMAGE_TAG)
TEST_TIMEOUT ?= 9m
# The supervisor's end-to-end tests that also run on the store's other write
# path (the conditional update of MongoDB; `make test` runs on FerretDB,
# whose default is the revision path).
E2E_RUN  ?= ^Test(Succeeded|StepFailed|Paused|Cancel|RunDeadline|ChildCrash|LastAttempt|RunnerDead|StolenLease|Rejected|Shutdown|RetriedEvent)
# staticcheck from PATH, else where `go install` puts it.
STATICCHECK ?= $(shell command -v staticcheck || echo $$($(GO) env GOPATH)/bin/staticcheck)

.PHONY: all build dev test test-ui test-postgres lint proto bench image chaos clean

all: build

build:
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The main job on the embedded default: embedded NATS, MongoDB-wire and S3
# servers plus the supervisor, in one process.
dev: build
	$(BIN)/runnerd dev

test: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -timeout $(TEST_TIMEOUT) ./...
	RUNNERD_TEST_WRITE_PATH=conditional $(GO) test -tags '$(TAGS)' -timeout $(TEST_TIMEOUT) ./store/
	RUNNERD_TEST_WRITE_PATH=conditional RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -timeout $(TEST_TIMEOUT) -run '$(E2E_RUN)' ./supervisor/

# The web UI in a real headless Chromium (webui/e2e_test.go, build tag
# uitest) and Firefox (webui/firefox_test.go): runnerd dev and the client
# commands as processes, the page driven with chromedp and over WebDriver
# BiDi. Needs Debian's chromium (CHROMIUM names another binary) and
# firefox-esr (FIREFOX names another; without either in PATH the Firefox
# test skips); under a minute. The screenshots go to .artifacts/ui/
# (git-ignored).
test-ui: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) RUNNERD_UI_ARTIFACTS=$(CURDIR)/.artifacts/ui $(GO) test -tags '$(TAGS) uitest' -count=1 -timeout 5m -v -run 'TestBrowser' ./webui/

# The store suite and the supervisor's end-to-end suite against FerretDB v1
# on a real PostgreSQL server, each a process of its own, on both write
# paths (scripts/test-postgres.sh). Needs PostgreSQL's server binaries
# (Debian: postgresql); about 1.5 minutes.
test-postgres: build
	GO='$(GO)' TAGS='$(TAGS)' E2E_RUN='$(E2E_RUN)' RUNNERD_BIN=$(CURDIR)/$(BIN) scripts/test-postgres.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags '$(TAGS) chaos' ./chaos/...
	$(GO) vet -tags '$(TAGS) uitest' ./webui/...
	@# The production build (Dockerfile) links none of the embedded servers.
	$(GO) vet -tags 'nodev' ./cmd/runnerd
	@! $(GO) list -tags 'nodev' -deps ./cmd/runnerd | grep -E 'runnerd/devstack|FerretDB|nats-server|gofakes3|sqlite' || { echo "the nodev build links an embedded server"; exit 1; }
	@# The supervisor talks to runexec through the child seam: it links no executor.
	@! $(GO) list -tags '$(TAGS)' -deps ./supervisor ./child | grep -E 'runnerd/runnerd/executor$$' || { echo "the supervisor or the child seam links the executor"; exit 1; }
	@if [ -x "$(STATICCHECK)" ]; then \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags '$(TAGS)' ./... && \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags '$(TAGS) chaos' ./chaos/... && \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags '$(TAGS) uitest' ./webui/... && \
		$(STATICCHECK) -checks all,-ST1000,-ST1003 -tags 'nodev' ./cmd/runnerd; \
	else echo "staticcheck not installed; skipped (.ci/run installs it)"; fi

proto:
	scripts/gen-proto.sh

# Micro-benchmarks (child, store) at the default benchtime; the macro ones
# of ./bench do a fixed number of runs each, so they run once (-benchtime 1x).
# Figures: docs/benchmarks.md.
bench: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchmem $$($(GO) list -tags '$(TAGS)' ./... | grep -v '/bench$$')
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -run '^$$' -bench . -benchtime 1x -timeout 45m ./bench/

# Reliability suites (chaos, fencing, dependency faults, misbehaving
# workflows, bad input): real processes and signals, 5-20 minutes, and
# they take the machine. Not part of `make test`.
chaos: build
	RUNNERD_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS) chaos' -timeout 60m -v ./chaos/

# The container image (Dockerfile): runnerd and runexec, runnerd serve as
# the default command. Needs a Docker engine.
# The manifests (kubectl apply -k deploy/kubernetes/) run the tag it builds.
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf $(BIN)
