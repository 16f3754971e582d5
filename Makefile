# arl — developer tasks. `make help` lists them.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 5s
BENCHTIME ?= 1s
STATICCHECK_VERSION ?= v0.8.2
GOBIN     ?= $(shell $(GO) env GOPATH)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the server and the simulated provider into ./bin
	$(GO) build -o bin/arl-extproc ./cmd/extproc
	$(GO) build -o bin/simprovider ./cmd/simprovider

.PHONY: run
run: ## Run the server on the memory backend
	$(GO) run ./cmd/extproc

.PHONY: test
test: ## Run every test with the race detector, then each fuzz target briefly
	$(GO) test -race -count=1 $(PKGS)
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 5s), minimizing new inputs for at most FUZZMINIMIZETIME (1s)
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

.PHONY: lint
lint: ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck $(PKGS)

.PHONY: bench
bench: ## Run the Go benchmarks (figures for BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)
