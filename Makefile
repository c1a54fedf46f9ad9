# paypage: the two commands are `make run` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: run test deps check vulncheck bench fuzz build perf screenshots

# Every fuzz target, as package:Target (a test checks that none is missing).
FUZZ_TARGETS := \
	./pkg/card:FuzzParsePAN ./pkg/card:FuzzParseExpiry ./pkg/card:FuzzParseName ./pkg/card:FuzzParseCVV \
	./pkg/payment:FuzzCardForm ./pkg/payment:FuzzReturnURL ./pkg/web:FuzzDecodeJSON ./pkg/threeds:FuzzDecodeCRes \
	./pkg/webhook:FuzzVerify ./pkg/egress:FuzzCheckURL ./pkg/account:FuzzParseFrameOrigin ./pkg/clientaddr:FuzzClient
FUZZTIME ?= 20s

## run: start the service with the embedded store and sandbox connectors (no set-up);
## the binary replaces the shell (exec), so Ctrl-C or a kill of make stops it
run:
	$(GO) build -o bin/paypage ./cmd/paypage && exec bin/paypage serve

## demo: try it: the service (a temporary embedded store, the sandboxes) and a
## demo shop on http://127.0.0.1:8081 that pays through it; Ctrl-C stops both
demo:
	$(GO) build -o bin/paypage ./cmd/paypage && exec bin/paypage demo

## build: the binary, in ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/paypage ./cmd/paypage

## deps: install what the tests need (redis-server, chromium) from Debian's packages
deps:
	@./scripts/test-deps.sh

## check: formatting, vet, staticcheck, and known vulnerabilities in the module graph
check: vulncheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## vulncheck: govulncheck against the Go vulnerability database, from the
## golang.org/x/vulndb module (pinned in the script) through the module proxy
vulncheck:
	@./scripts/vulncheck.sh

## test: install test dependencies, check the code, run every test (real Redis, real Chromium), then every
## fuzz target for 50,000 inputs (1 to 10 s each): a count, not a duration, since Go 1.26's fuzzer can
## fail a target with "context deadline exceeded" when a duration ends mid-run (golang/go#75804)
test: deps check
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=50000x

## bench: every benchmark: each step of a card payment on memory, bolt and Redis, and the
## hot paths over HTTP. To see a change, compare runs with benchstat:
##   make bench BENCHCOUNT=6 > old.txt; (change); make bench BENCHCOUNT=6 > new.txt; go tool benchstat old.txt new.txt
BENCHCOUNT ?= 1
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) -timeout 60m ./...

## perf: the README's load figures in one run (scripts/perf.sh): the floor server, redis-benchmark,
## and every hot path with paypage load on Redis and on the embedded store; PERFTIME each
PERFTIME ?= 30s
perf: deps
	./scripts/perf.sh $(PERFTIME)

## fuzz: every fuzz target in turn for FUZZTIME (20s, or a count of inputs such as 50000x)
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

## screenshots: the README's screenshots, from the browser tests, into docs/screenshots
screenshots: deps
	PAYPAGE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run TestBrowser ./internal/e2e
