# Siyu (私域助手). `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/siyu_test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
export FLASK_APP := wsgi

.PHONY: help run test test-embedded test-services lint audit bench bench-sidebar bench-welcome bench-segments bench-mass-send bench-lifecycle bench-webhooks bench-drain bench-radar bench-brand bench-moments bench-panel drills migrate translations clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

# `make run` is the sandbox unless a real corp is configured (then its settings are taken as they are).
run migrate: export SIYU_SANDBOX ?= $(if $(WECOM_CORP_ID),0,1)

migrate: $(STAMP) ## apply database migrations (DATABASE_URL, default SQLite under instance/)
	$(BIN)/flask db upgrade

run: migrate ## run Siyu: web server, worker, scheduler and the WeCom sandbox in one process
	$(BIN)/flask dev

test: lint test-embedded test-services ## lint, then the whole suite on SQLite + in-process Redis and on PostgreSQL + Redis

test-embedded: $(STAMP) ## the suite on SQLite and the in-process Redis stand-in
	@echo "== tests: SQLite + in-process Redis"
	env -u DATABASE_URL -u REDIS_URL -u WECOM_CORP_ID SIYU_TEST_BACKEND=embedded $(BIN)/pytest -q

test-services: $(STAMP) ## the suite on the machine's PostgreSQL and Redis (required when CI=true)
	@if $(BIN)/python tests/services_up.py "$(PG_TEST_URL)" "$(REDIS_TEST_URL)"; then \
		echo "== tests: PostgreSQL + Redis"; \
		env -u WECOM_CORP_ID SIYU_TEST_BACKEND=services DATABASE_URL="$(PG_TEST_URL)" REDIS_URL="$(REDIS_TEST_URL)" \
			$(BIN)/pytest -q; \
	elif [ "$$CI" = "true" ]; then \
		echo "CI needs PostgreSQL at $(PG_TEST_URL) and Redis at $(REDIS_TEST_URL)"; exit 1; \
	else \
		echo "== PostgreSQL or Redis not reachable: skipped the services run (CI runs it)"; \
	fi

lint: $(STAMP) ## ruff (lint + format check), the import contracts (import-linter) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# The pins are pyproject.toml's `==` requirements (the app's and the dev tools'; the unpinned type stubs are not
# shipped). pip-audit asks PyPI's advisory data for each pinned version; --strict fails the audit when a
# version could not be looked up, so that an audit which checked nothing never passes. A known vulnerability
# that cannot be fixed by a newer pin goes in AUDIT_IGNORE (`--ignore-vuln ID`), with a comment saying why.
AUDIT_IGNORE :=
audit: $(STAMP) ## pip-audit the pinned requirements against PyPI's advisory data (needs the network)
	@$(BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(r for r in p["dependencies"] + p["optional-dependencies"]["dev"] if "==" in r))' \
		> $(VENV)/pinned-requirements.txt
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off $(AUDIT_IGNORE) \
		--requirement $(VENV)/pinned-requirements.txt

bench: $(STAMP) ## the callback benchmark under gunicorn on PostgreSQL + Redis
	$(BIN)/python bench/callbacks.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench)" --redis-url redis://127.0.0.1:6379/14

bench-drain: $(STAMP) ## the event drain: 2 worker processes emptying the queue, WeCom answering at 0 and at 50 ms ± 20
	$(BIN)/python bench/drain.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_drain)" --redis-url redis://127.0.0.1:6379/14

bench-sidebar: $(STAMP) ## the sidebar benchmark: a member's customer view and the page signature, a million customers
	$(BIN)/python bench/sidebar.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_sidebar)"

bench-welcome: $(STAMP) ## the welcome benchmark: 300 adds/s for 20 s at WeCom 0 and 50 ms, receipt → send_welcome_msg latency
	$(BIN)/python bench/welcome.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench)" --redis-url redis://127.0.0.1:6379/14

bench-segments: $(STAMP) ## the segment benchmark: counts, explanations and streaming over 1,000,000 customers
	$(BIN)/python bench/segments.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_segments)" --redis-url redis://127.0.0.1:6379/12

bench-webhooks: $(STAMP) ## the webhooks-out benchmark: deliveries/s and event→delivery latency to loopback receivers
	$(BIN)/python bench/webhooks_out.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_webhooks)" --redis-url redis://127.0.0.1:6379/11

drills: $(STAMP) ## every drill in turn (bench/drills.py NAME runs one): load, faults, fuzzing; restarts this machine's Redis and PostgreSQL
	$(BIN)/python bench/drills.py all --database-url "$(PG_TEST_URL:siyu_test=siyu_drill)" --redis-url redis://127.0.0.1:6379/13

bench-mass-send: $(STAMP) ## the mass-send benchmark: 1,000,000 recipients over 2,000 members against the sandbox
	$(BIN)/python bench/mass_send.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_sends)" --redis-url redis://127.0.0.1:6379/11

bench-moments: $(STAMP) ## the moments benchmark: tracking one moment asked of 500 members (50,000 customers) against the sandbox
	$(BIN)/python bench/moments.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_moments)" --redis-url redis://127.0.0.1:6379/12

bench-brand: $(STAMP) ## the brand-data benchmark: 1,000,000 orders by API batches, the RFM recompute, segment count, rankings
	$(BIN)/python bench/brand_data.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_brand)" --redis-url redis://127.0.0.1:6379/9

bench-lifecycle: $(STAMP) ## the lifecycle benchmark: the four built-in rules' daily evaluation over 1,000,000 customers
	$(BIN)/python bench/lifecycle.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_lifecycle)" --redis-url redis://127.0.0.1:6379/10

bench-radar: $(STAMP) ## the radar link benchmark: opens/s and p99 of /r/<token> beside a bare redirect, opens recorded once
	$(BIN)/python bench/radar.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_radar)" --redis-url redis://127.0.0.1:6379/6

bench-panel: $(STAMP) ## the panel benchmark: pickers, list pages and compose pages with 2,000 members, 3,000 tags, 1,000,000 customers
	$(BIN)/python bench/panel.py --database-url "$(PG_TEST_URL:siyu_test=siyu_bench_panel)" --redis-url redis://127.0.0.1:6379/13

translations: $(STAMP) ## re-extract the panel's texts, update the English catalogue, compile it
	$(BIN)/pybabel extract -F admin/translations/babel.cfg -k _l -k N_ --no-location --sort-output \
		-o admin/translations/messages.pot .
	$(BIN)/pybabel update -i admin/translations/messages.pot -d admin/translations --ignore-obsolete --no-fuzzy-matching
	$(BIN)/pybabel compile -d admin/translations

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .mypy_cache
