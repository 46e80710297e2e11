# Two commands on a fresh machine:  `make chat`  and  `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: chat test setup index check lint bench clean

chat: index  ## install, prepare the model and the index if missing or stale, open the terminal chat
	$(PY) -m bot chat

test: setup  ## install, then run the whole test suite
	$(PY) -m pytest

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

index: setup  ## build the index (a no-op when nothing changed)
	$(PY) index_builder.py

check: setup  ## validate the knowledge files
	$(PY) index_builder.py --check

lint: setup
	$(PY) -m ruff check bot tests index_builder.py bench
	$(PY) -m mypy bot

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) data
