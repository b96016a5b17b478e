# The two commands of the README. Each does all of its own set-up on a fresh machine:
# the virtualenv and pinned Python packages, the Debian tools, and (on first start) Kafka
# from Maven Central.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint setup debian

demo: setup
	$(BIN)/genomhub demo

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy shared services tools tests bench

# Debian first: the validator's C extension needs gcc when the package installs.
setup: debian $(STAMP)

debian:
	@bash tools/debian/install.sh

# uv installs the pinned packages (the same set pip would, from the same constraints) in
# seconds rather than the minute and a half pip takes here.
UV := uv==0.13.9

$(STAMP): pyproject.toml constraints.txt services/validator/_fastq_scan.c
	python3 -m venv $(VENV)
	$(BIN)/pip install -q $(UV)
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

# Refreshes the pins after a change of pyproject.toml's dependencies.
constraints.txt:
	$(BIN)/pip freeze --exclude-editable | grep -v '^genomhub' > $@
