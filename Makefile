# movierec: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,postgres,mysql,spark,stack
# Debian packages the project needs at run or test time (checked with dpkg, installed only if missing):
# gcc and libc6-dev build the compiled kernels (src/movierec/_kernels.c), libgomp1 for
# implicit/LightGBM, chromium and an emoji font for the browser tests of the UI
# (Playwright drives /usr/bin/chromium; never `playwright install`), Java for the Spark engine,
# docker-compose to validate deploy/docker-compose.yml (no Docker engine is needed for that).
SYSTEM_PACKAGES := gcc libc6-dev libgomp1 chromium fonts-noto-color-emoji openjdk-17-jre-headless docker-compose
# Debian packages only the benchmarks need (the load generator of bench_service.py).
BENCH_PACKAGES := wrk time

# Real MovieLens data shipped beside the checkout (CI and developers); never copied into the repo.
ifneq ($(wildcard ../shared/data/movielens),)
export MOVIEREC_DATA_DIR ?= $(abspath ../shared/data/movielens)
endif

.PHONY: install system-deps test lint typecheck unit demo bench fmt clean stack stack-down stack-status compose-check reliability

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" != 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml setup.py $(wildcard src/movierec/*.c src/movierec/*.h)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks deploy/stack.py
	$(BIN)/ruff format --check src tests benchmarks deploy/stack.py

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q --durations=25

test: lint typecheck unit

fmt: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

DEMO_DIR := $${MOVIEREC_HOME:-.movierec}/demo
DEMO_PORT ?= 8000
UI_PORT ?= 8501
demo: install
	$(BIN)/movierec data ingest ml-latest-small --report $(DEMO_DIR)/ingest.json
	$(BIN)/movierec data stats --dataset ml-latest-small --json $(DEMO_DIR)/stats.json --plot $(DEMO_DIR)/stats.png
	@test -f $${MOVIEREC_HOME:-.movierec}/bundles/CURRENT || $(BIN)/movierec train --dataset ml-latest-small --model ranked
	@# writes (POST /feedback) and admin routes need credentials: generated once, kept in the demo folder
	@for f in api_key admin_token; do test -s $(DEMO_DIR)/$$f || \
	  (umask 077; $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(24))" > $(DEMO_DIR)/$$f); done
	@echo "demo: API on http://127.0.0.1:$(DEMO_PORT) (docs: http://127.0.0.1:$(DEMO_PORT)/docs)"
	@echo "demo: UI  on http://127.0.0.1:$(UI_PORT); Ctrl-C stops both"
	@echo "demo: API key and admin token in $(DEMO_DIR)/api_key and $(DEMO_DIR)/admin_token"
	@trap 'kill 0' INT TERM EXIT; \
	  export MOVIEREC_API_KEY=$$(cat $(DEMO_DIR)/api_key) MOVIEREC_ADMIN_TOKEN=$$(cat $(DEMO_DIR)/admin_token); \
	  $(BIN)/movierec serve --host 127.0.0.1 --port $(DEMO_PORT) & \
	  MOVIEREC_API_URL=http://127.0.0.1:$(DEMO_PORT) $(BIN)/movierec ui --port $(UI_PORT) & \
	  wait

# The deployment (deploy/docker-compose.yml) as local processes on 127.0.0.1: the broker, an
# MLflow server on PostgreSQL, the API (2 workers), the UI, the scheduler and the consumer,
# over this machine's PostgreSQL and Redis; settings in deploy/stack.env (any can be overridden
# from the environment). `make stack-down` stops all of it and checks nothing is left.
stack: install
	$(BIN)/python deploy/stack.py up

stack-down:
	$(BIN)/python deploy/stack.py down

stack-status:
	@$(BIN)/python deploy/stack.py status

# Validate the compose file (Debian's docker-compose; no Docker engine needed).
compose-check: system-deps
	cd deploy && POSTGRES_PASSWORD=check MOVIEREC_ADMIN_TOKEN=check MOVIEREC_API_KEY=check \
	  docker-compose -p movierec -f docker-compose.yml config -q && echo "deploy/docker-compose.yml is valid"

# One reliability suite against real processes: fuzzing, load, hot reload under load, crashes,
# security, resource bounds; one table, JSON in benchmarks/results/reliability.json (make test
# runs its shortened version, tests/test_reliability.py).
reliability: install
	$(BIN)/python benchmarks/reliability.py

bench: install
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(BENCH_PACKAGES)"
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_models.py als
	$(BIN)/python benchmarks/bench_models.py scoring
	$(BIN)/python benchmarks/bench_models.py ease
	$(BIN)/python benchmarks/bench_service.py --catalog small
	$(BIN)/python benchmarks/bench_service.py --catalog 60k
	$(BIN)/python benchmarks/bench_service.py --catalog small --strategy ranked
	$(BIN)/python benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
