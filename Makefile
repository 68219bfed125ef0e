# The project's everyday commands. Each uses the virtual environment in .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup serve test lint repro

setup: ## create .venv with the pipeline, the service and the test tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements/dev.txt

serve: ## run the API on $$PORT (default 8000) with models/segmenter.onnx
	$(BIN)/python -m service

test: ## lint, then every test (the same command CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

repro: ## run the DVC pipeline: dataset -> trained, evaluated, exported model
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
