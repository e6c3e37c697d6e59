# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ffvision-installed
FMNIST := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint docs fmnist install clean

# Virtual environment with torch/torchvision (pinned releases that pip finds on this machine's disk).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,export]'
	@touch $(STAMP)

install: $(STAMP)

# Real FashionMNIST from Debian's package (IDX files in /usr/share/datasets/fashion-mnist).
fmnist:
	@test -d $(FMNIST) || $(SUDO) apt-get install -y -q dataset-fashion-mnist \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist)

# Train ASGE (VGG8, width 0.25) on 10,000 FashionMNIST images for 3 epochs; print test accuracy
# of every prediction strategy. About a minute on 2 idle CPU cores (81.6% test by goodness-sum).
demo: $(STAMP) fmnist
	$(BIN)/ffvision train --method asge --model vgg8 --width-mult 0.25 --dataset fashion-mnist \
	  --train-subset 10000 --epochs 3 --batch-size 128

test: $(STAMP) fmnist
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

# docs/options.md is generated from the options' declarations (tests/test_options.py checks it is current).
docs: $(STAMP)
	$(BIN)/ffvision list --options > docs/options.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
