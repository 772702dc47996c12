# Plaza's whole developer interface. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
CODE := $(wildcard src tests bench)

.DEFAULT_GOAL := help
.PHONY: help install browser run test lint format bench bench-feed bench-chat screenshots clean
CHROMIUM ?= /usr/bin/chromium

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Plaza with its dev extras

run: install ## Serve everything on http://127.0.0.1:8000 (SQLite file, in-process cache and bus)
	$(VENV)/bin/plaza serve --host 127.0.0.1 --port 8000

browser: ## Debian's Chromium for the browser tests (Playwright downloads no browser here)
	@test -x $(CHROMIUM) || { apt-get update -qq && apt-get install -y -qq chromium; } \
		|| echo "could not install chromium: browser tests will be skipped (and fail under CI=true)"

test: install browser ## Run every test (PostgreSQL, Redis and Chromium too; under CI=true they must be there)
	$(VENV)/bin/pytest

lint: install ## ruff format --check, ruff check, mypy --strict on src
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/mypy

format: install ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format $(CODE)
	$(VENV)/bin/ruff check --fix $(CODE)

bench: install ## Benchmarks; figures are appended to bench/RESULTS.md
	$(PY) bench/run.py

bench-feed: install ## Feed benchmark (fan-out vs stream-framework-plus, reads, memory), ~3 min
	$(PY) bench/feed.py

bench-chat: install ## Chat benchmark (10,000 WebSocket users on both backends and a bare baseline), ~10 min
	$(PY) bench/chat.py

screenshots: install browser ## Screenshots of the main pages into docs/screenshots (sample data)
	$(PY) -m tests.browser.screenshots docs/screenshots

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
