# Development tasks; CI runs .ci/run, which uses the same commands.
VENV ?= .venv

.PHONY: test lint format package ci

test:
	$(VENV)/bin/pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

package:
	bash packaging/check_wheel.sh

ci:
	bash .ci/run
