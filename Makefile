# Hehe (和合) — the two README commands.
#   make run    chat with Hehe in the browser: http://127.0.0.1:8000/chat (no Telegram token needed)
#   make test   the checks (ruff, import contracts, mypy), then the whole test suite
# Both create .venv with python3 -m venv if it is missing and install what they need once
# (a stamp file remembers the pyproject.toml that was installed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

# Playwright drives Debian's /usr/bin/chromium; it must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
# Models ship inside PyPI packages; never reach a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run demo test check install install-test clean-venv help

help:
	@echo "make run    - web chat at http://127.0.0.1:8000/chat (SQLite under ./data)"
	@echo "make demo   - the same with demo users of every role and sample data (./data-demo)"
	@echo "make test   - lint, import contracts, type check, then the test suite"
	@echo "make check  - only the lint, import contracts and type check (seconds)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The test extra pins torch==2.13.0 (a CPU build pip takes from local disk); installing
# it first means nothing later asks pip for another torch.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# On loopback, sign-in codes are written to this terminal (the console SMS provider).
run: $(VENV)/.installed
	HEHE_SMS_PROVIDER=$${HEHE_SMS_PROVIDER:-console} $(BIN)/hehe serve

demo: $(VENV)/.installed
	HEHE_SMS_PROVIDER=$${HEHE_SMS_PROVIDER:-console} $(BIN)/hehe demo

# pytest exits 5 when it collects nothing; the check after it also fails a run where
# every test was skipped or deselected (nothing was really tested).
# Static checks first (seconds): ruff, the import-linter contracts of pyproject.toml, mypy on backend/core and the services (the files of [tool.mypy] in pyproject.toml).
check: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# --durations: the 25 slowest tests in every report; --timeout: a hung test fails alone
# instead of freezing the run.
test: check
	$(BIN)/python -m pytest -rs --durations=25 --timeout=300 --junitxml=$(VENV)/junit.xml $(PYTEST_ARGS)
	@$(BIN)/python -c "import sys, xml.etree.ElementTree as E; \
	r = E.parse('$(VENV)/junit.xml').getroot(); s = r if r.tag == 'testsuite' else r.find('testsuite'); \
	ran = int(s.get('tests', 0)) - int(s.get('skipped', 0)); \
	print(f'tests executed: {ran}'); sys.exit(0 if ran > 0 else 1)"

clean-venv:
	rm -rf $(VENV)
