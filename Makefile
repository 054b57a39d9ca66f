# Reverb's tasks. The README quotes these targets; CI (.ci/run) runs them.
# uv is used when it is on PATH, else `python3 -m uv`, else it is installed
# with `python3 -m pip install --user uv` the first time a target needs it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || (python3 -m uv --version >/dev/null 2>&1 && echo "python3 -m uv"))
ifeq ($(strip $(UV)),)
UV := python3 -m uv
NEED_UV := 1
endif

APP ?= examples/shop.py
# Hand-written code that mypy checks strictly (gen/ is generated; infra/ is its own project).
TYPED := sdk/src telemetry/src function_host/src store/src queue_worker/src ingress_gateway/src cli/src examples tests $(wildcard bench)

.PHONY: help uv sync dev test fuzz lint format gen gen-check bench bench-quick chaos chaos-short

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

uv:  ## Install uv if it is missing.
ifdef NEED_UV
	python3 -m pip install --user uv || python3 -m pip install --user --break-system-packages uv
endif
	@$(UV) --version

sync: uv  ## Install the workspace and its dev tools into .venv.
	$(UV) sync

dev: sync  ## Run Reverb with the example app on an embedded PostgreSQL.
	@# The venv's script, not `uv run`: uv forwards the terminal's Ctrl-C a second time.
	.venv/bin/reverb dev $(APP)

test: sync  ## Run the whole test suite (starts an embedded PostgreSQL if none is on 127.0.0.1:5432).
	$(UV) run pytest --durations=25

fuzz: sync  ## A bounded schemathesis run (~2 min, fixed seed) against a real gateway's OpenAPI document.
	$(UV) run pytest tests/fuzz -m fuzz -p no:randomly

lint: sync  ## ruff, ruff format --check, mypy --strict, import contracts, buf lint.
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy $(TYPED)
	$(UV) run lint-imports
	$(UV) run bash scripts/protodeps.sh
	$(UV) run buf lint

format: sync  ## Fix imports and formatting.
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

gen: sync  ## Regenerate gen/ from proto/.
	$(UV) run bash scripts/generate.sh

gen-check: gen  ## Fail if the committed gen/ differs from what proto/ generates.
	git diff --exit-code -- gen/
	@test -z "$$(git status --porcelain -- gen/)" || { git status --porcelain -- gen/; echo "gen/ has untracked or changed files"; exit 1; }

bench: sync  ## Run the benchmarks (results in bench/results/).
	$(UV) run python -m bench

bench-quick: sync  ## A short benchmark run, as CI does.
	$(UV) run python -m bench --quick

# Sizes of `make chaos` (`make chaos-short` is the CI form; see bench/chaos/).
CHAOS_RUNS ?= 1500
CHAOS_KILLS ?= 40
CHAOS_SECONDS ?= 120

chaos: sync  ## kill -9 of workers and hosts under load, a PostgreSQL restart; check nothing was lost.
	$(UV) run python -m bench.chaos --runs $(CHAOS_RUNS) --kills $(CHAOS_KILLS) --seconds $(CHAOS_SECONDS)

chaos-short: sync  ## The chaos run's short form, as CI runs it (150 runs over 40 s, 10 kills, about 90 s).
	$(UV) run python -m bench.chaos --short
