# tinyseek: `make demo` runs the main job, `make test` runs the tests.
# GPU users pick their torch build: make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tinyseek-installed

.PHONY: install bwrap browser test test-slow lint demo demo-seeds bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# bubblewrap sandboxes model-written code (tinyseek.sandbox); a no-op when bwrap is present.
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap; \
	  else echo "bubblewrap missing: run 'sudo apt-get install bubblewrap' (sandbox tests will be skipped)" >&2; fi; }

# Chromium + chromedriver drive the web chat's browser test (tests/test_webchat_browser.py, skipped without them).
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "chromium/chromedriver missing: run 'sudo apt-get install chromium chromium-driver' (browser tests will be skipped)" >&2; fi; }

test: $(STAMP) bwrap browser
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) bwrap
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check tinyseek tests bench
	$(VENV)/bin/ruff format --check tinyseek tests bench
	$(VENV)/bin/mypy tinyseek

# The R1-Zero pipeline end to end (~10 minutes on 2 CPU cores): runs/r1zero/report.md, summary.json, model/.
demo: $(STAMP)
	$(VENV)/bin/tinyseek r1zero --out runs/r1zero

# The same pipeline for seeds 0, 1, 2 (all three at once, one thread each), aggregated with 95% intervals: runs/r1zero-seeds/report.md.
demo-seeds: $(STAMP)
	$(VENV)/bin/tinyseek r1zero --seeds 0,1,2 --jobs 3 --out runs/r1zero-seeds

clean:
	rm -rf $(VENV) runs .pytest_cache
