# Two commands do everything: `make demo` and `make test`. Each creates .venv and installs the project first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.covseg-installed
DEMO_DATA ?= data/synthetic
DEMO_CACHE ?= cache/demo
DEMO_CASES ?= 12
DEMO_RICORD ?= 40
DEMO_LESIONS ?= 4-8
DEMO_LESION_MM ?= 25-60
DEMO_RUN ?= runs/demo
DEMO_SEED ?= 42

.PHONY: install demo docs test nbtest smoke check-sync clean-outputs browser docs-check gpu-check repo-check gpu-kit gpu-rehearsal test-slow

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The main job on the embedded synthetic data: synthesise the three datasets, convert and cache them
# (at the demo profile's small grids), train both stages with the demo profile, evaluate both
# inference modes on the tuning and hold-out sets and write the report (runs/demo/report.html).
demo: $(STAMP)
	$(BIN)/covseg synth $(DEMO_DATA) --cases $(DEMO_CASES) --ricord-cases $(DEMO_RICORD) --lesions $(DEMO_LESIONS) --lesion-mm $(DEMO_LESION_MM) --seed 0
	$(BIN)/covseg prepare $(DEMO_DATA) $(DEMO_CACHE) --resplit --grids 16x48x48,24x64x64
	rm -rf $(DEMO_RUN)
	$(BIN)/covseg train $(DEMO_CACHE) $(DEMO_RUN) --profile demo --set seed=$(DEMO_SEED)
	$(BIN)/covseg evaluate $(DEMO_RUN) --mode both --report

# The documentation's outputs: every notebook executed as the tests execute it, plus the cells flagged `demo`, which
# show the demo run (made first when it is missing: ~15 min on 2 cores); the training chapter runs on the demo run as a
# user runs it. Into _exec/nbs/ (never committed: made from the code of this commit, so never stale), then rendered
# (nbconvert here, Quarto on GitHub: `nbdev-docs --path _exec/nbs`) and checked as a reader sees it; screenshots
# in _exec/html/screenshots/.
docs: $(STAMP) browser
	@test -f $(DEMO_RUN)/eval/cases.csv || $(MAKE) demo
	COVSEG_SMOKE_ROOT=$(SMOKE_ROOT) $(PY) tools/make_docs.py --run $(DEMO_RUN) --cache $(DEMO_CACHE)
	$(PY) tools/check_docs.py --nbs _exec/nbs --reader --keep _exec/html

# Notebook tests: every notebook, two at a time, as `nbdev-test` runs them (cells flagged cuda/data/net/slow/demo are
# skipped); first the smoke run that several notebooks read (covseg.train.smoke_run: five synthetic studies, both
# stages, trained once per version of the code into the ignored .cache/), then the docs check, then the check that
# notebooks are clean and the exported library is in step with them. bench/bench_notebooks.py times every notebook.
# The real chest CTs of this workplace (COVID-CT-MD's sample, never in the repository) for the real-CT cells of 06_pacs
# (and the `slow` ones of 33_lungmask and 42_clinical): COVSEG_REAL_CT names the folder when it exists; empty
# elsewhere, and those cells say they skipped.
REAL_CT := $(wildcard $(abspath ../shared/realct))
SMOKE_ROOT ?= $(abspath .cache)
NBENV := COVSEG_REAL_CT=$(REAL_CT) COVSEG_SMOKE_ROOT=$(SMOKE_ROOT)
empty :=
bar := |
# The docs and repository checks run beside the notebooks (make -j2), filling the cores the notebooks' tail leaves idle.
test: $(STAMP) browser
	$(MAKE) --no-print-directory -j2 --output-sync=line nbtest docs-check repo-check
	$(MAKE) --no-print-directory check-sync

nbtest: smoke
	$(NBENV) $(BIN)/nbdev-test --n-workers 2 --timing --cell-timing-min 60

# The GitHub workflows and CITATION.cff against their published schemas (check-jsonschema's bundled copies: no network);
# the notebooks' shape (tools/nb_stats.py --check): at least 95 % of exported cells followed by an example, none over
# 60 lines, no module importing one whose notebook comes later.
repo-check: $(STAMP)
	$(PY) tools/nb_stats.py --check
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.citation-file-format CITATION.cff

# Headless Chromium and its driver for the HTML viewer's browser tests (Debian packages), installed only when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  s=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$s apt-get update -qq && $$s env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Docs checks without Quarto: nbdev-proc-nbs, nbconvert of every processed notebook, the HTML viewers in headless Chromium.
docs-check: $(STAMP) browser
	$(PY) tools/check_docs.py

check-sync: $(STAMP)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(BIN)/nbdev-export && $(BIN)/nbdev-clean && $(PY) tools/make_readme.py && \
	  git diff --exit-code --stat -- covseg nbs README.md || { echo "nbdev-export/nbdev-clean changed files: commit clean notebooks and the exported library"; exit 1; }; \
	fi

# On a lent GPU machine (no network, no install step): bench/gpu_check.sh installs the kit `make gpu-kit` built (.whl/,
# carried) and runs bench/gpu_check.py within GPU_BUDGET seconds: the `cuda` notebook cells, the paper-size training step
# per stage, the 11 GB card, a shortened `paper` run, whole-study inference; results into $$OUT (bench/out/gpu here) after
# every part. On a GPU box of your own with `make install` done: `.venv/bin/python bench/gpu_check.py`.
GPU_BUDGET ?= 450
gpu-check:
	bash bench/gpu_check.sh --budget $(GPU_BUDGET)

# The wheel kit for a lent GPU machine (bench/gpu_kit.py): the distributions bench/gpu_check.py and the notebooks it runs
# need beyond the machine's image, at .venv's versions, as CPython 3.12 wheels in .whl/ (packed into .whl/kit.tar.xz when
# kit + tree would pass 60 MB); prints the list and the sizes, fails if kit + tree are still over 60 MB. Carry `.whl` and
# run `bash bench/gpu_check.sh` there.
gpu-kit: $(STAMP)
	$(PY) bench/gpu_kit.py build

# That run rehearsed here: the same kit for this machine's Python (.whl-rehearsal/), a fresh venv that sees only .venv's
# image distributions besides it, a copy of the travelling tree, `bash bench/gpu_check.sh --cpu-test $(GPU_REHEARSAL_ARGS)`
# (--nbs: nbdev-test runs the `cuda` notebooks' other cells on the CPU, proving the runner and their imports are in the kit).
GPU_REHEARSAL_ARGS ?= --nbs 12_loaders,31_infer
gpu-rehearsal: $(STAMP)
	$(PY) bench/gpu_kit.py rehearse -- $(GPU_REHEARSAL_ARGS)

# The slow tests, after `make test` (.ci/run runs both): the notebooks that hold `slow` cells, with those cells (the
# learning proof and its sabotages, the real CTs, full-size studies, the GPU check at tiny sizes); then the GPU kit
# for the device (every wheel it needs exists for CPython 3.12, and kit + tree stay under 60 MB) and the GPU check's
# rehearsal.
SLOW_NBS := $(basename $(notdir $(shell grep -l '"\#| slow' nbs/*.ipynb)))
test-slow: smoke browser
	$(NBENV) $(BIN)/nbdev-test --n-workers 2 --timing --cell-timing-min 60 --cell-timeout 1200 --flags slow --file-re '^($(subst $(empty) $(empty),$(bar),$(SLOW_NBS)))\.ipynb$$'
	$(MAKE) gpu-kit gpu-rehearsal

# The smoke run several notebooks read (covseg.train.smoke_run), trained once per version of the code into $(SMOKE_ROOT).
smoke: $(STAMP)
	$(NBENV) $(PY) -c "from covseg.train import smoke_run; print('smoke run:', smoke_run().name)"

clean-outputs:
	rm -rf $(DEMO_DATA) $(DEMO_CACHE) $(DEMO_RUN) _proc _docs _exec .cache
