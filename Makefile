# paypage: the two commands are `make run` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: run test deps check bench fuzz build load screenshots

## run: start the service with the embedded store and sandbox connectors (no set-up);
## the binary replaces the shell (exec), so Ctrl-C or a kill of make stops it
run:
	$(GO) build -o bin/paypage ./cmd/paypage && exec bin/paypage serve

## build: the binary, in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/paypage ./cmd/paypage

## deps: install what the tests need (redis-server, chromium) from Debian's packages
deps:
	@./scripts/test-deps.sh

## check: formatting, vet and staticcheck
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## test: install test dependencies, check the code, run every test (real Redis, real Chromium)
test: deps check
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## bench: the benchmarks quoted in the README
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./pkg/card ./pkg/vault ./pkg/account ./pkg/store/bolt ./pkg/store/redis ./internal/e2e

## load: the card page and session creation under wrk (apt-get install wrk)
load:
	./scripts/load.sh 10s

## fuzz: a short run of every fuzz target
fuzz:
	for f in FuzzParsePAN FuzzParseExpiry FuzzParseName FuzzParseCVV; do $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s ./pkg/card || exit 1; done

## screenshots: the README's screenshots, from the browser tests, into docs/screenshots
screenshots: deps
	PAYPAGE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run TestBrowser ./internal/e2e
