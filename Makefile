# The lakehouse's entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.py | sha1sum | cut -c1-12)
WARM := $(VENV)/.warmed-$(shell cat conf/env/base.yaml scripts/kafka/pom.xml | sha1sum | cut -c1-12)
SCALE ?= 0.1
DAYS ?= 90
ENV ?= local
export SPARK_LOCAL_IP ?= 127.0.0.1

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: SCALE=$(SCALE) DAYS=$(DAYS) ENV=$(ENV) LAKEHOUSE_ROOT=$${LAKEHOUSE_ROOT:-./lakehouse-data}"

$(STAMP): setup.py
	@command -v java >/dev/null || { echo "error: java not found: install Java 17" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(WARM): $(STAMP) conf/env/base.yaml scripts/kafka/pom.xml
	$(PY) -m lakehouse.cli warm --env local
	scripts/kafka.sh fetch
	@rm -f $(VENV)/.warmed-* && touch $@

setup: $(WARM) ## Create .venv, install the package and test tools, resolve the Spark packages and the Kafka broker's jars once

demo: setup ## Generate the raw zone, build every layer, train, register, score and monitor the fraud model, write its card (one Spark application)
	./spark-submit.sh --env $(ENV) demo --scale $(SCALE) --days $(DAYS)

stream-demo: setup ## After make demo: a Kafka broker, the producer and the stream job for about a minute, then the accounting
	./spark-submit.sh --env $(ENV) stream_demo

train: setup ## Train the fraud model, register it in MLflow, promote it if it beats the champion (after `make demo`)
	./spark-submit.sh --env $(ENV) train

score: setup ## Score the payments not scored yet with the champion model
	./spark-submit.sh --env $(ENV) score

monitor: setup ## Drift, realized performance and fairness of the champion, to Delta (after `make demo`)
	./spark-submit.sh --env $(ENV) monitor

model-card: setup ## Write the champion's model card to <lake_root>/reports
	./spark-submit.sh --env $(ENV) model_card

promote: setup ## Make a model version the champion: make promote VERSION=N
	./spark-submit.sh --env $(ENV) promote --version $(VERSION)

export-sample: setup ## Export a training sample (Parquet) for a notebook
	./spark-submit.sh --env $(ENV) export_training_sample

quality-report: setup ## Profile silver and gold, then write the HTML quality report (after `make demo`)
	./spark-submit.sh --env $(ENV) quality_profile
	./spark-submit.sh --env $(ENV) quality_report

maintain: setup ## OPTIMIZE (Z-order where declared), VACUUM and refresh statistics of every table
	./spark-submit.sh --env $(ENV) maintenance $(if $(TABLES),--tables $(TABLES))

replay: setup ## Replay quarantined records: make replay TABLE=silver.transactions [RULE=...]
	./spark-submit.sh --env $(ENV) replay --table $(TABLE) $(if $(RULE),--rule $(RULE))

test: setup ## Run the whole test suite (unit and integration, local Spark; what CI runs)
	$(PY) -m pytest -q

test-fast: setup ## The unit tests and the quick integration tests, for the edit-run loop
	$(PY) -m pytest -q -m "not slow"

lint: setup ## ruff check and format check
	$(VENV)/bin/ruff check lib jobs tests bench
	$(VENV)/bin/ruff format --check lib jobs tests bench

bench-stream: setup ## Latency of the real-time path (bronze, silver, decisions) at 1k/5k/20k payments/s, Real-time Mode vs micro-batches
	$(PY) bench/stream_bench.py $(if $(BENCH_ROOT),--root $(BENCH_ROOT)/stream)

bench: setup ## Benchmark stage by stage vs bare Spark and DuckDB, scale-out prediction, quality overhead
	$(PY) bench/pipeline_bench.py --scale $(SCALE) $(if $(BENCH_ROOT),--root $(BENCH_ROOT)/pipeline)
	$(PY) bench/quality_overhead.py --scale $(SCALE) $(if $(BENCH_ROOT),--root $(BENCH_ROOT)/quality)

pyenv: setup ## Pack the executors' Python environment for a cluster (build/pyenv.tar.gz)
	scripts/pack-pyenv.sh

clean-lake: ## Delete the local lake (./lakehouse-data or $$LAKEHOUSE_ROOT if a local path)
	rm -rf "$${LAKEHOUSE_ROOT:-./lakehouse-data}"

clean: ## Remove build outputs (keeps .venv and the lake)
	rm -rf build .pytest_cache .ruff_cache

.PHONY: help setup demo stream-demo bench-stream train score monitor model-card promote export-sample quality-report maintain replay test lint bench pyenv clean clean-lake
