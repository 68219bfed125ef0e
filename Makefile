# The project's everyday commands. Each uses the virtual environment in .venv, and builds
# or refreshes it first when it is missing or a requirements file changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Written after a complete install: an interrupted one is redone on the next command.
INSTALLED := $(VENV)/.installed

.PHONY: setup serve test repro

setup: $(INSTALLED) ## create or refresh .venv with the pipeline, the service and the test tools

# The pipeline's packages are held to the versions the committed model was built with
# (reports/packages.txt, which check_packages writes): a newer release of any of them,
# even a transitive one, would make `dvc repro` retrain.
$(INSTALLED): requirements/serve.txt requirements/train.txt requirements/ray.txt requirements/dev.txt reports/packages.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements/dev.txt -c reports/packages.txt
	touch $@

serve: $(INSTALLED) ## run the API on $$PORT (default 8000) with models/segmenter.onnx
	$(BIN)/python -m service

test: $(INSTALLED) ## lint, then every test (the same command CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

repro: $(INSTALLED) ## run the DVC pipeline: dataset -> trained, evaluated, exported model
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

.PHONY: report lock-images

report: ## write reports/cml/report.md with curves and overlays; BASE=main adds the diff against main
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m scripts.make_report --out reports/cml $(if $(BASE),--base $(BASE))

lock-images: ## hash-lock the images' requirements (docker/*.lock) from requirements/serve.txt
	$(BIN)/python -m scripts.lock_images

.PHONY: bench

bench: ## measure the service against the original service, BentoML, FastAPI, PyTorch and INT8 (~12 min) -> benchmarks/results/
	$(BIN)/python -m benchmarks.run --reuse-serve-venv

.PHONY: reliability

reliability: ## reliability suite, full mode (~6-10 min) -> reliability/results/full.{json,md}; ARGS=--quick for CI's
	$(BIN)/python -m reliability $(ARGS)

.PHONY: register promote registry

# The model registry is git tags on origin (GTO, stages in .gto); each move fetches them
# first, since a version or stage number must follow the newest one anyone pushed.
FETCH_TAGS := git fetch --quiet --tags origin

register: $(INSTALLED) ## version the model committed at HEAD: pushes tag segmenter@vX.Y.Z (next patch; BUMP=minor or BUMP=major)
	$(FETCH_TAGS)
	$(BIN)/gto register segmenter HEAD $(if $(BUMP),--bump-$(BUMP)) --push

promote: $(INSTALLED) ## STAGE=dev|prod: pushes tag segmenter#STAGE#N for HEAD's version (VERSION=v1.2.3 for another), which deploys it
	$(if $(STAGE),,$(error STAGE is missing: run make promote STAGE=dev or STAGE=prod))
	$(FETCH_TAGS)
	$(BIN)/gto assign segmenter $(if $(VERSION),segmenter@$(VERSION),HEAD) --stage $(STAGE) --push

registry: $(INSTALLED) ## the model's versions and the stage each holds, as origin has them
	$(FETCH_TAGS)
	$(BIN)/gto show segmenter
