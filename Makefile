# Every target sets up .venv itself. torch==2.13.0 is installed first so that pip takes the
# local CPU build and never pulls CUDA packages; torchvision, segmentation_models_pytorch and timm
# are installed without their dependencies, only for the parity tests (the package never imports them).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test bench claims clean format serve

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) --no-deps torchvision==0.28.0 segmentation-models-pytorch==0.6.0 timm==1.0.31
	$(PIP) -e ".[dev,bench]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/deeplab demo

serve: install
	$(VENV)/bin/deeplab serve

test: install
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py

claims: install
	$(PY) benchmarks/paper_claims.py

clean:
	rm -rf $(VENV) demo-output claims-output build *.egg-info src/*.egg-info
