# Two commands do everything on a fresh machine:
#   make run    create/update the virtualenv, then serve the app on http://127.0.0.1:$(PORT)
#   make test   create/update the virtualenv, then lint and run the whole test suite
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8501
PY := $(VENV)/bin/python
# The stamp is rebuilt whenever requirements.txt changes, so installs are idempotent and cheap.
STAMP := $(VENV)/.requirements-installed

.PHONY: run test lint bench bench-readme clean-venv

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.headless true --server.address 127.0.0.1 \
		--server.port $(PORT) --browser.gatherUsageStats false

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

# Benchmarks need the peer libraries in requirements-bench.txt; results land in bench/results/.
bench: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) bench/propagation.py
	$(PY) bench/readme_tables.py

bench-readme: $(STAMP)
	$(PY) bench/readme_tables.py

clean-venv:
	rm -rf $(VENV)
