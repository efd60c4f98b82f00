# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SKUS   ?= 300
WEEKS  ?= 156
SEED   ?= 42

.PHONY: install run test lint bench-m4 lock clean

install: $(STAMP)

# Exact versions from requirements.lock (torch would come from the local CPU wheel when added).
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

run: install
	$(BIN)/stockml demo-data --skus $(SKUS) --weeks $(WEEKS) --seed $(SEED)
	$(BIN)/stockml run

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=15

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench-m4: install
	$(BIN)/python -m bench.m4_weekly --train ../shared/data/m4/Weekly-train.csv --out bench/m4_weekly_results.json

# Re-resolve the lock from requirements.in (needs uv: pip install uv).
lock:
	uv pip compile requirements.in --python-version 3.11 -o requirements.lock

clean:
	rm -rf .stockml .pytest_cache .ruff_cache
