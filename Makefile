# torchdet: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: setup demo test test-slow bench bench-train bench-all bench-compile bench-profile bench-train-quality clean

setup: $(STAMP)

# torch is pinned first: the local CPU wheel installs in seconds, while an unpinned torch
# would pull the newest CUDA build. The package itself declares a loose range.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev,export]'
	touch $(STAMP)

demo: setup
	$(PY) -m torchdet.cli demo

test: setup
	$(PY) -m pytest -q -n 2 --durations=15

test-slow: setup
	$(PY) -m pytest -q -n 2 -m slow

# torchvision's figures: the stored file (the README's table), or BASELINE=live where torchvision imports.
BASELINE ?= benchmarks/baselines/torchvision_cpu.json
bench: setup
	$(PY) -m torchdet.cli benchmark --baseline $(BASELINE)

# The long runs: training step (3 builders), everything (latency, batch 4, train, memory),
# torch.compile of the backbone, and where a builder's training step spends its time.
bench-train: setup
	$(PY) -m torchdet.cli benchmark --train --baseline $(BASELINE)

bench-all: setup
	$(PY) -m torchdet.cli benchmark --all --json runs/bench.json --baseline $(BASELINE)

# Time to accuracy from scratch (recipe vs plain loop, two builders, 360 iterations each): hours on 2 cores.
bench-train-quality: setup
	$(PY) -m torchdet.cli benchmark --train-quality --out runs/train_quality

bench-compile: setup
	$(PY) -m torchdet.cli benchmark --compile

BENCH_PROFILE ?= fasterrcnn_resnet50_fpn
bench-profile: setup
	$(PY) -m torchdet.cli benchmark --profile $(BENCH_PROFILE) --train

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
