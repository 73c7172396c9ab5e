# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEMO_ENTRIES ?= 2000

.PHONY: run run-federation test docs-check lint typecheck imports unit bench bench-http bench-stats bench-halfyear bench-verify bench-webhooks clean browser-deps vendor i18n-extract i18n-update i18n-compile screenshots bench-web reliability reliability-races reliability-retries reliability-standby reliability-transfers fuzz test-pg-app-role

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/timebank migrate
	$(BIN)/timebank seed --demo --if-empty --entries $(DEMO_ENTRIES)
	$(BIN)/timebank serve --host $(HOST) --port $(PORT)

# Two district banks, 鼓楼 on PORT and 秦淮 on PORT+1, each the other's peer and witness, data in
# ./var/federation (docs/federation.md#two-district-demo); Ctrl-C stops both.
run-federation: $(VENV)/.installed
	$(BIN)/python -m demo.federation --host $(HOST) --port $(PORT) --entries $(DEMO_ENTRIES)

test: lint typecheck imports unit

# The README's and the walk-throughs' commands, run against a fresh demo (docs/README.md);
# also part of `make unit` (tests/test_docs_run.py).
docs-check: $(VENV)/.installed-dev
	$(BIN)/python -m tests.docs_runner

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

unit: $(VENV)/.installed-dev node_modules/.installed
	$(BIN)/pytest -n 2 --dist loadgroup

# The browser tests drive Debian's Chromium (never `playwright install`) and inject axe-core
# from npm. CI (.ci/run) installs the Debian packages; `make browser-deps` does the same here.
browser-deps:
	apt-get install -y chromium fonts-noto-cjk poppler-utils sqlite3 postgresql-client
	apt-get install -y --no-install-recommends libreoffice-calc-nogui

node_modules/.installed: package.json package-lock.json
	npm ci
	touch $@

# Browser files served by the app are committed under web/static/vendor; this refreshes them
# from the pinned npm packages (package-lock.json). Review the diff before committing.
vendor: node_modules/.installed
	cp node_modules/htmx.org/dist/htmx.min.js web/static/vendor/htmx.min.js
	cp node_modules/htmx.org/LICENSE web/static/vendor/htmx.LICENSE
	cp node_modules/@noble/ed25519/index.js web/static/vendor/noble-ed25519.js
	cp node_modules/@noble/ed25519/LICENSE web/static/vendor/noble-ed25519.LICENSE
	cp node_modules/jsqr/dist/jsQR.js web/static/vendor/jsqr.js
	cp node_modules/jsqr/LICENSE web/static/vendor/jsqr.LICENSE
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
	   node_modules/swagger-ui-dist/LICENSE node_modules/swagger-ui-dist/NOTICE web/static/vendor/swagger-ui/

# Screenshots of the main pages at 360 px in both languages, for docs/webapp.md.
screenshots: $(VENV)/.installed-dev node_modules/.installed
	$(BIN)/python -m tests.web_screenshots
	$(BIN)/python -m tests.web_desk_screenshots

# Page weight and render time of the web app on the demo (JSON on stdout; docs/performance.md).
bench-web: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/web_pages.py

# Translations: extract the messages, merge them into each catalog, then translate the new
# entries in web/locale/<lang>/LC_MESSAGES/messages.po. The app compiles the .po files in
# memory when it starts; i18n-compile writes .mo files only to check that they compile.
# The workflow's refusals (care/errors.py), whose cases are translated whole too.
CARE_ERRORS = CareError InsufficientBalance NotEligible OverlappingRecord DailyCapExceeded \
  SelfVerification NotARelative GiftsDisabled FutureRecord InvalidDuration NotPriorityElder \
  InvalidSignature InvalidConfirmationCode MemberNotActive LateRecord OutsideRequest \
  TooManyCodeAttempts WrongState
# The ledger's refusals of an entry or a proof request (ledger/errors.py), translated whole too.
LEDGER_ERRORS = EntryError MalformedEntry UnbalancedPostings PostingRuleViolation ProofRequestError
i18n-extract: $(VENV)/.installed-dev
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k translate:2 -k InvalidInput -k WeakPassword \
	  -k Conflict -k NumberOnFile -k Words -k Forbidden -k NotFound $(CARE_ERRORS:%=-k %) \
	  $(LEDGER_ERRORS:%=-k %) --no-location \
	  --sort-output --omit-header -o web/locale/messages.pot .

i18n-update: $(VENV)/.installed-dev
	$(BIN)/pybabel update -i web/locale/messages.pot -d web/locale --no-fuzzy-matching \
	  --omit-header --ignore-obsolete

i18n-compile: $(VENV)/.installed-dev
	$(BIN)/pybabel compile -d web/locale --statistics

# The crash figure in docs/reliability.md: 500 SIGKILLs of a writer, `timebank verify` after each.
CRASH_KILLS ?= 500
reliability: $(VENV)/.installed-dev
	TIMEBANK_CRASH_KILLS=$(CRASH_KILLS) TIMEBANK_CRASH_VERIFY_EACH=1 \
	$(BIN)/pytest tests/test_crash.py -n 0 -s -k any_moment $(RELIABILITY_ARGS)

# The racing-redemptions figure: 10,000 redemptions a database (make test runs a few hundred).
RACE_REDEMPTIONS ?= 10000
reliability-races: $(VENV)/.installed-dev
	TIMEBANK_RACE_REDEMPTIONS=$(RACE_REDEMPTIONS) \
	$(BIN)/pytest tests/test_redemption_races.py -n 0 -s $(RELIABILITY_ARGS)

# The retried-keys figure: 10,000 keys a database, each sent three times (make test: 300).
RETRIED_KEYS ?= 10000
reliability-retries: $(VENV)/.installed-dev
	TIMEBANK_RETRIED_KEYS=$(RETRIED_KEYS) \
	$(BIN)/pytest tests/test_retried_keys.py -n 0 -s $(RELIABILITY_ARGS)

# Failover to a synchronous PostgreSQL standby under load (docs/operations.md); also in make test.
reliability-standby: $(VENV)/.installed-dev
	$(BIN)/pytest tests/test_standby.py -n 0 -s $(RELIABILITY_ARGS)

# 1,000 concurrent transfers between two real servers, both ways (docs/federation.md); make
# test runs 100. Then the crash test of each server killed at each step of a transfer.
PEER_TRANSFERS ?= 1000
reliability-transfers: $(VENV)/.installed-dev
	TIMEBANK_PEER_TRANSFERS=$(PEER_TRANSFERS) \
	$(BIN)/pytest tests/test_transfer_concurrency.py tests/test_transfer_crash.py -n 0 -s $(RELIABILITY_ARGS)

# Every PostgreSQL test of the suite on databases used as an app role that their owner granted
# with `timebank migrate --grant-to` (docs/operations.md), not as the superuser.
test-pg-app-role: $(VENV)/.installed-dev
	TIMEBANK_TEST_PG_AS=app $(BIN)/pytest -n 2 --dist loadgroup -k postgresql $(PG_APP_ROLE_ARGS)

# The long fuzzing run of docs/reliability.md: schemathesis as every role of the test world,
# FUZZ_EXAMPLES cases an operation (make test: 20, as a bank admin and anonymously).
FUZZ_EXAMPLES ?= 60
fuzz: $(VENV)/.installed-dev
	TIMEBANK_FUZZ_ROLES=all TIMEBANK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	$(BIN)/pytest tests/test_schemathesis.py -n 2 --dist loadgroup -q -k test_api $(FUZZ_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/append.py

# timebank verify and inclusion proofs on a 10^6 log, built once in BENCH_VERIFY_DIR and kept
BENCH_VERIFY_DIR ?= /tmp/timebank-bench-1e6
bench-verify: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/large_log.py --dir $(BENCH_VERIFY_DIR) $(BENCH_VERIFY_ARGS)

# Live visit coverage of 10^5 elders against one hand-written SQL count (docs/performance.md)
bench-stats: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python benchmarks/coverage.py $(BENCH_STATS_ARGS)

# The half-yearly report and its recomputation over 10^6 entries (docs/performance.md);
# BENCH_HALFYEAR_ARGS="--bundle /tmp/tb-half" keeps the bundle and databases between runs.
bench-halfyear: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python benchmarks/halfyear.py $(BENCH_HALFYEAR_ARGS)

# Webhook delivery to a local receiver and the outbox's cost in a write (docs/performance.md).
bench-webhooks: $(VENV)/.installed-dev
	PYTHONPATH=. $(BIN)/python benchmarks/webhooks.py $(BENCH_WEBHOOKS_ARGS)

# HTTP throughput against the framework's ceiling (wrk from Debian; see benchmarks/README.md)
bench-http: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/http_load.py $(BENCH_HTTP_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
