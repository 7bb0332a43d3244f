# mmconv2former: `make install`, `make test`, `make demo`. Everything runs inside .venv/ (see tools/install.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test test-all lint demo demo-detection demo-segmentation clean-venv

install:
	bash tools/install.sh

lint: install
	$(VENV)/bin/ruff check mmconv2former tools tests configs setup.py

# The README's test command; .ci/run calls exactly this. Slow tests run with `make test-all`.
test: install lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Set-up plus the main jobs on CPU: stack check, then detection and segmentation quickstarts (train, evaluate, picture).
demo: install
	$(PY) tools/misc/check_stack.py
	$(MAKE) demo-detection demo-segmentation

demo-detection: install
	PYTHON=$(PY) bash tools/misc/demo.sh detection

demo-segmentation: install
	PYTHON=$(PY) bash tools/misc/demo.sh segmentation

clean-venv:
	rm -rf $(VENV)
