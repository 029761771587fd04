# Two commands set everything up: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch torchvision torchaudio
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/polyformer demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -m "not slow" -q --durations=25

test-all: $(STAMP) lint
	$(BIN)/python -m pytest -q --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/core_layers.py
	$(BIN)/python benchmarks/attention_cpu_bf16.py
	$(BIN)/python benchmarks/vit_vs_timm.py
	$(BIN)/python benchmarks/decoding.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
