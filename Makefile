PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The demo needs only the runtime dependencies (no torch, mkdocs or pytest).
DEMO_STAMP := $(VENV)/.installed-runtime
# The docs need the runtime dependencies and the pinned doc toolchain (the [docs] extra).
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: test demo docs clean

# The fused CPU kernel (jaxopt_dl/fused/fused_update.cc) is compiled by setup.py against
# the venv's own jax (no build isolation), so installing works offline once jax is there.
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 'setuptools>=77' 'jax>=0.4.30' 'jaxlib>=0.4.30'

$(STAMP): pyproject.toml setup.py jaxopt_dl/fused/fused_update.cc | $(VENV)/bin/python
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml setup.py jaxopt_dl/fused/fused_update.cc | $(VENV)/bin/python
	$(PY) -m pip install --quiet --no-build-isolation -e .
	touch $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml setup.py jaxopt_dl/fused/fused_update.cc | $(VENV)/bin/python
	$(PY) -m pip install --quiet --no-build-isolation -e '.[docs]'
	touch $(DOCS_STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

demo: $(DEMO_STAMP)
	$(PY) -m jaxopt_dl train --dataset digits --model resnet --optimizer adam --lr 3e-3 --schedule warmup_cosine --epochs 12 --batch-size 64 --seed 0 --out runs/demo

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build jaxopt_dl/fused/*.so
