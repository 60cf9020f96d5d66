# optnb: two commands do all the set-up on a fresh machine with Python 3.11.
#   make reproduce   venv + install + every notebook headless (profile auto) + the report in results/
#   make test        venv + install + the whole test suite (unit, notebooks, distributed, browser)
#   make lab         JupyterLab on notebooks/
#   make rehearse    dress rehearsal: every paper run at the paper's configuration for a few steps
#                    on generated data, killed and resumed (results/rehearsal/report.md; 30 min, 2 cores)
#   make lock        regenerate requirements.lock, the tested versions `make` installs
# Teaching (README, "For teachers"):
#   make student     student/: notebooks 01-05 and 08 with the solutions removed (nbgrader)
#   make solutions   solutions/: the same notebooks with their solutions (nbgrader's source)
#   make grade DIR=  autograde DIR/<student>/<notebook>.ipynb, a feedback report per student
#   make site        results/site/index.html: the executed notebooks of `make reproduce` as static HTML
#   make present     the beta and activation explorers as Voila apps (code hidden), on localhost:$(PORT)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.optnb-installed
PROFILE ?= auto
JOBS   ?= 0
PORT   ?= 8866

# Keep Jupyter, IPython and matplotlib from reading or writing the home directory.
HERMETIC := JUPYTER_CONFIG_DIR=$(CURDIR)/.jupyter/config JUPYTER_DATA_DIR=$(CURDIR)/.jupyter/data \
	JUPYTER_RUNTIME_DIR=$(CURDIR)/.jupyter/runtime IPYTHONDIR=$(CURDIR)/.jupyter/ipython \
	MPLCONFIGDIR=$(CURDIR)/.jupyter/mpl PYTHONDONTWRITEBYTECODE=1

.PHONY: venv lock reproduce test test-unit test-notebooks test-browser lint lab bench clean \
	student solutions grade site present rehearse

LOCK   := requirements.lock

# the tested versions (LOCK), then the package itself, editable and without touching them
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-cache-dir -q -r $(LOCK)
	$(BIN)/python -m pip install --no-cache-dir -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# regenerate LOCK from pyproject.toml's ranges (newest versions that fit; pins already in LOCK are
# kept while they still fit; `make lock UPGRADE=1` moves every pin to the newest). pip-tools lives in
# its own venv under $(VENV), so the project's venv keeps its pip.
LOCK_TOOLS := $(VENV)/pip-tools
lock:
	@test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
		$(LOCK_TOOLS)/bin/python -m pip install -q pip-tools==7.7.0; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile -q --extra dev --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		--output-file $(LOCK) pyproject.toml
	@{ echo "# The tested versions for $$($(PYTHON) -c 'import platform as p; print(p.system(), p.machine(), \
		"CPython", p.python_version())'): make installs them (docs/reproduce.md, Tested versions)."; \
		cat $(LOCK); } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

reproduce: venv
	$(HERMETIC) $(BIN)/optnb reproduce --profile $(PROFILE) --jobs $(JOBS)

rehearse: venv
	$(HERMETIC) $(BIN)/optnb reproduce --profile paper --rehearse --jobs $(JOBS)

test: test-unit test-notebooks test-browser

test-unit: venv lint
	$(HERMETIC) OPTNB_HEADLESS=1 OPTNB_PROFILE=smoke $(BIN)/python -m pytest -m "not gpu and not slow and not browser" \
		-p no:cacheprovider --timeout 900 -q

test-notebooks: venv
	$(HERMETIC) OPTNB_HEADLESS=1 OPTNB_PROFILE=smoke OPTNB_RESULTS=$(CURDIR)/results/nbval $(BIN)/python -m pytest \
		--nbval-lax --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 300 \
		-p no:cacheprovider --timeout 900 -q notebooks/0[0-5]_*.ipynb

# installs Debian's chromium when it is missing (or says in one line how to), then drives JupyterLab
test-browser: venv
	scripts/ensure-browser.sh
	$(HERMETIC) $(BIN)/python -m pytest -m browser -p no:cacheprovider --timeout 600 -q

lint: venv
	$(BIN)/ruff check optnb tests benchmarks
	$(BIN)/nbstripout --verify notebooks/*.ipynb notebooks/_fixtures/*.ipynb apps/*.ipynb

lab: venv
	$(HERMETIC) $(BIN)/jupyter lab --notebook-dir=notebooks

student: venv
	$(HERMETIC) $(BIN)/optnb teach student --out student

solutions: venv
	$(HERMETIC) $(BIN)/optnb teach solutions --out solutions

grade: venv
	@test -n "$(DIR)" || { echo "make grade: say which folder, e.g. make grade DIR=submissions (DIR/<student>/<notebook>.ipynb)" >&2; exit 2; }
	$(HERMETIC) $(BIN)/optnb teach grade "$(DIR)" $(if $(OUT),--out "$(OUT)")

# static HTML of the latest `make reproduce` run's executed notebooks (runs nothing)
site: venv
	$(HERMETIC) $(BIN)/optnb site

present: venv
	$(HERMETIC) $(BIN)/optnb present --port $(PORT)

bench: venv
	$(HERMETIC) $(BIN)/optnb bench --quick

clean:
	rm -rf results .jupyter .pytest_cache student solutions
