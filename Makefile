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

# The suite on two workers (a file's tests stay on one, with its module's fixtures; each
# worker has its own session broker), then the end-to-end tests on their own, one at a time:
# each runs the whole stack on the services' own ports, and the fault test's timing (leases
# of seconds) is measured against a machine it does not share with other tests.
test: setup lint
	$(BIN)/pytest --numprocesses 2 --dist loadfile --ignore tests/e2e
	$(BIN)/pytest tests/e2e

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
