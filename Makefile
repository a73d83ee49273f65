# Petrel — common tasks. `make run` starts the daemon on its embedded
# defaults; `make test` is the exact command CI runs (via .ci/run).

GO ?= go

.PHONY: run dev build test test-ports vet fmt-check fuzz fuzz-long bench bench-quick

run:
	$(GO) run ./cmd/petreld

# dev is the README quick start: the local test sink on 127.0.0.1:2526
# (prints every message it receives, stores it in petrel-data/sink) and
# petreld on dist/petrel.dev.toml, whose [[transport]] routes all mail to
# the sink. Ctrl-C stops both.
dev:
	$(GO) build -o bin/ ./cmd/petreld ./cmd/petrelctl ./cmd/petrel-sendmail
	@bin/petrelctl sink -listen 127.0.0.1:2526 -dir petrel-data/sink & sink=$$!; \
	  trap 'kill $$sink 2>/dev/null' EXIT; bin/petreld -config dist/petrel.dev.toml

build:
	$(GO) build -o bin/ ./cmd/...

# completion scripts and the man page of petrelctl, generated from its
# command table into bin/ (dist/README.md says where to install them).
.PHONY: completions
completions: build
	bin/petrelctl completion bash > bin/petrelctl.bash
	bin/petrelctl completion zsh > bin/_petrelctl
	bin/petrelctl man > bin/petrelctl.1

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: fmt-check vet test-ports
	$(GO) test -count=1 -timeout 30m ./...

# test-ports says, before the tests start, which of the quick-start ports
# are taken (a `make run` or `make dev` left up): the tests start their
# own daemons, sinks and MX hosts on free ports and never use these.
PETREL_PORTS ?= 2525 8025 2526
test-ports:
	@for p in $(PETREL_PORTS); do \
	  if bash -c "exec 3<>/dev/tcp/127.0.0.1/$$p" 2>/dev/null; then \
	    echo "note: 127.0.0.1:$$p is in use (make run / make dev still up?); the tests use free ports and leave it alone"; \
	  fi; \
	done

# fuzz runs every fuzz target briefly (FUZZTIME per target).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# fuzz-long runs every fuzz target for FUZZLONG (default 10m) with one
# worker, one target at a time, goes on after a failure and lists the
# failed targets at the end (a crasher is written to the package's
# testdata/fuzz/<Target>/). A non-zero exit that wrote no crasher is Go
# 1.26's fuzztime deadline race (golang/go#75804, "context deadline
# exceeded"), reported as a flake, not a failure. -timeout 0: go test's
# default 10m test timeout would otherwise fire at the same moment as a
# 10m fuzztime. The new corpus entries stay in the fuzz cache
# ($(GO) env GOCACHE)/fuzz: copy them to testdata/fuzz/<Target>/ to keep
# them (FUZZING.md). Not part of CI: about 6 hours for all targets.
FUZZLONG ?= 10m
.PHONY: fuzz-long
fuzz-long:
	@failed=""; flaked=""; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$(date -u +%H:%M:%S) $$pkg $$f ($(FUZZLONG))"; \
	    before=$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l); \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZLONG) -parallel 1 -timeout 0 $$pkg; then \
	      if [ "$$(ls $$dir/testdata/fuzz/$$f 2>/dev/null | wc -l)" -gt "$$before" ]; then failed="$$failed $$pkg.$$f"; \
	      else flaked="$$flaked $$pkg.$$f"; fi; \
	    fi; \
	  done; \
	done; \
	if [ -n "$$flaked" ]; then echo "fuzz-long: no crasher written, fuzztime deadline flake (golang/go#75804):$$flaked"; fi; \
	if [ -n "$$failed" ]; then echo "fuzz-long: crashers written:$$failed"; exit 1; fi; echo "fuzz-long: no crasher found"

# bench runs every benchmark scenario (issues 3 and 17, see bench/README.md
# and bench/RESULTS.md): it installs Postfix if missing, makes sure the
# system Postfix is not left listening on port 25, unpacks the peers (Exim,
# OpenSMTPD, chasquid, OpenDKIM from Debian with dpkg -x, Haraka from npm;
# bench/fetch-peers.sh) into /var/cache/petrel-bench, then runs
# petrel-bench: the reference load (smtp-source, one connection per
# message) through every contender first, then the pipelined load and the
# queue scenarios, and prints one table. bench-quick is the CI smoke test
# (Petrel, Postfix and the no-op on a small N; needs no peer). Extra
# flags: BENCH_FLAGS="-scenarios reference_load -contenders petrel,postfix".
BENCH_FLAGS ?=
.PHONY: bench-postfix
bench-postfix:
	@if ! command -v smtp-source >/dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix; \
	fi
	@postfix stop >/dev/null 2>&1 || true
	@if ss -ltn 'sport = :25' 2>/dev/null | grep -q LISTEN; then echo "warning: something still listens on port 25"; fi

.PHONY: bench-peers
bench-peers:
	@bash bench/fetch-peers.sh

bench: bench-postfix bench-peers
	$(GO) run ./bench/cmd/petrel-bench run $(BENCH_FLAGS)

bench-quick: bench-postfix
	$(GO) run ./bench/cmd/petrel-bench run -quick $(BENCH_FLAGS)

# bench-flows runs the automation benchmarks (issue 14: 10,000 timers due
# at once, custom-event ingest with p99, 1,000,000 waiting contacts' RSS).
# They are Go benchmarks of campaign/flow over a real Pebble queue and
# SQLite, because bench/ drives binaries and imports no production code.
.PHONY: bench-flows
bench-flows:
	$(GO) test -run '^$$' -bench 'DueTimers10k|MillionWaiting' -benchtime 1x ./campaign/flow
	$(GO) test -run '^$$' -bench CustomEvents -benchtime 20000x ./campaign/flow

# bench-campaign runs the campaign send benchmarks (issue 12): the engine
# up to the queue on 1,000,000 SQLite contacts (msgs/s, CPU µs/msg, peak
# RSS), and petreld end to end to the sink with the transactional ack
# p99 idle and during the campaign (PETREL_BENCH_CONTACTS sets both sizes).
.PHONY: bench-campaign
bench-campaign:
	PETREL_BENCH_CONTACTS=$${PETREL_BENCH_CONTACTS:-1000000} $(GO) test -run '^$$' -bench CampaignSend -benchtime 1x -timeout 3h ./campaign
	$(GO) test -run '^$$' -bench CampaignE2E -benchtime 1x -timeout 4h ./bench/
# bench-audience runs the audience benchmarks (issue 11: a 1,000,000-contact
# CSV import and a 3-condition segment count on SQLite and PostgreSQL,
# single-upsert p99), Go benchmarks of audience like bench-flows.
.PHONY: bench-audience
bench-audience:
	$(GO) test -run '^$$' -bench ImportAndSegment -benchtime 1x -timeout 60m ./audience/
	$(GO) test -run '^$$' -bench UpsertContact -benchtime 2000x -timeout 30m ./audience/
