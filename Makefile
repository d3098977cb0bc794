# Developer entry points. `make run` starts the whole stack locally (no Docker); `make test` is
# what CI runs (.ci/run). Every target uses the project's own virtualenv in .venv.

VENV    := .venv
PY      := $(VENV)/bin/python
# Re-run `pip install` only when pyproject.toml changes, so `make test` stays fast.
STAMP   := $(VENV)/.bankflow-installed

# `make test SLOW=1` also runs the slow (load and chaos) suites; SLOW=0 or unset skips them.
SLOW        ?=
PYTEST_MARK := $(if $(filter-out 0,$(SLOW)),,not slow)
PYTEST_ARGS ?=

.PHONY: install run test lint clean

install: $(STAMP)

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

run: install
	$(PY) scripts/dev.py

# An empty -m overrides the `-m 'not slow'` in pyproject's addopts, i.e. selects every test.
# Lint first: CI runs only `make test`, and ruff and mypy must be clean there too.
test: install lint
	$(VENV)/bin/pytest -m '$(PYTEST_MARK)' $(PYTEST_ARGS)

# --explicit-package-bases: tests/api/ is a package while tests/ is not, so without it mypy
# maps tests/api/__init__.py to a second top-level `api`.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --explicit-package-bases .

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache $(STAMP)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
