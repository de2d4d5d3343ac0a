# movierec: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,postgres,mysql
# Debian packages the project needs at run or test time (checked with dpkg, installed only if missing).
SYSTEM_PACKAGES := libgomp1

# Real MovieLens data shipped beside the checkout (CI and developers); never copied into the repo.
ifneq ($(wildcard ../shared/data/movielens),)
export MOVIEREC_DATA_DIR ?= $(abspath ../shared/data/movielens)
endif

.PHONY: install system-deps test lint typecheck unit demo bench fmt clean

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" != 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

fmt: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

DEMO_DIR := $${MOVIEREC_HOME:-.movierec}/demo
demo: install
	$(BIN)/movierec data ingest ml-latest-small --report $(DEMO_DIR)/ingest.json
	$(BIN)/movierec data stats --dataset ml-latest-small --json $(DEMO_DIR)/stats.json --plot $(DEMO_DIR)/stats.png
	@echo "demo: store under $${MOVIEREC_HOME:-.movierec}/store, report and plot under $(DEMO_DIR)"

bench: install
	$(BIN)/python benchmarks/bench_ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
