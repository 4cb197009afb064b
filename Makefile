# make demo  - set up .venv, train GoogLeNet, score a folder, print reports (embedded: no services)
# make test  - set up .venv, lint, run the test suite
# make env   - write .env with random secrets for docker compose (an existing .env is kept)
# make compose-test - the compose stack end to end on this machine's Docker engine, offline
#              (scripts/compose/compose_test.sh; Debian stand-in images, build/wheelhouse)
# Override DATA=/path/to/chest_xray, SCORE=/path/to/folder, EPOCHS=N, PYTHON=python3.11.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so every machine trains with the same kernels; a CPU-only build works too:
#   make setup TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.14.1 torchvision==0.29.1
DATA ?= ../shared/data/chest_xray
SCORE ?= $(if $(wildcard ../shared/data/fullres),../shared/data/fullres,$(DATA))
EPOCHS ?= 3

.PHONY: setup demo test lint clean env local-images wheelhouse compose-test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The demo scores the model its training printed: with several models a bare arch is refused,
# and nothing but `cxrq model promote` sets the default.
demo: setup
	$(BIN)/cxrq train --arch googlenet --data $(DATA) --epochs $(EPOCHS) | tee $(VENV)/demo-train.log
	@id=$$(sed -n 's/^model \([0-9][0-9]*\) stored.*/\1/p' $(VENV)/demo-train.log); \
	test -n "$$id" || { echo "training stored no model (see above)" >&2; exit 1; }; \
	echo "$(BIN)/cxrq score $(SCORE) --model $$id"; $(BIN)/cxrq score $(SCORE) --model $$id
	$(BIN)/cxrq report models
	$(BIN)/cxrq report job latest
	$(BIN)/cxrq report predictions latest --format csv | head -n 6

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

env:
	scripts/compose/make_env.sh

# Base-image stand-ins from Debian packages, and the wheels for an offline image build.
local-images:
	scripts/compose/build_local_images.sh

wheelhouse:
	scripts/compose/build_wheelhouse.sh

compose-test:
	scripts/compose/compose_test.sh
