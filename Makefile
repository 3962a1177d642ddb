# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dse-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test lint data install clean

install: $(STAMP)

# (Re)install when the project metadata changes; editable so conf/ and studies/ are found in place.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev,postgres,slurm,tensorboard,export]' 2>&1 | grep -v 'is ignored' || true
	$(BIN)/python -c 'import dse, torch, lightning, hydra, optuna, tensorboard, onnxruntime, hydra_plugins.hydra_submitit_launcher'
	touch $@

# Debian's dataset-fashion-mnist where apt runs as root; otherwise the data module downloads it.
data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
	  || echo "note: dataset-fashion-mnist not installed; torchvision will download Fashion-MNIST"; \
	fi

# The main job on the embedded default: a 5-point, 2-seed SR sweep of fire_small on Fashion-MNIST (CPU),
# the results table from the store, then the charts.
demo: install data
	$(BIN)/dse-train -m study=demo $(DEMO_ARGS)
	$(BIN)/dse-store show runs/demo -n 0
	$(BIN)/dse-report runs/demo

# Two pytest-xdist workers on CI's 2 cores (one thread each, longest tests first: tests/conftest.py;
# --dist worksteal: pyproject.toml); TEST_JOBS=0 runs the suite in one process.
TEST_JOBS ?= auto
test: install data
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check dse analysis hydra_plugins tests

clean:
	rm -rf runs outputs multirun .pytest_cache
