PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs only the runtime dependencies (no torch, mkdocs or pytest).
DEMO_STAMP := $(VENV)/.installed-runtime

.PHONY: test demo docs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $(DEMO_STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

demo: $(DEMO_STAMP)
	$(PY) -m jaxopt_dl train --dataset digits --model resnet --optimizer adam --lr 3e-3 --schedule warmup_cosine --epochs 12 --batch-size 64 --seed 0 --out runs/demo

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
