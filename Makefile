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

.PHONY: install demo test nbtest check-sync clean-outputs browser docs-check gpu-check repo-check

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

# Notebook tests (cells flagged cuda/data/slow are skipped), the docs check, then the check that
# notebooks are clean and the exported library is in step with them. The notebooks that train the
# 70 M-parameter model (3-10 GB of RAM each, the distributed one with two processes) run one at a
# time after the others, each in a fresh process, so that two of them never meet in memory: side by
# side in nbdev-test's two workers they once took a 24 GB machine out of memory.
TRAIN_NBS := 20_train 21_train_stages 91_ddp 90_cli 92_gpu_check
empty :=
bar := |
test: $(STAMP) browser
	$(BIN)/nbdev-test --n-workers 2 --skip-file-re '^($(subst $(empty) $(empty),$(bar),$(TRAIN_NBS)))\.ipynb$$'
	@for nb in $(TRAIN_NBS); do echo "nbdev-test nbs/$$nb.ipynb"; $(BIN)/nbdev-test --n-workers 0 nbs/$$nb.ipynb || exit 1; done
	$(MAKE) repo-check
	$(MAKE) docs-check
	$(MAKE) check-sync

# The GitHub workflows and CITATION.cff against their published schemas (check-jsonschema's bundled copies: no network).
repo-check: $(STAMP)
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

# On a CUDA machine, in at most 8 minutes (GPU_BUDGET seconds): the `cuda` notebook cells, the paper-size training step per
# stage, a shortened `paper` profile run on full-size synthetic studies, whole-study inference in both modes; writes the GPU
# section of BENCHMARKS.md and fails if a part failed or a target was missed (bench/gpu_check.py; --cpu-test: CPU, tiny).
GPU_BUDGET ?= 480
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py --budget $(GPU_BUDGET)

clean-outputs:
	rm -rf $(DEMO_DATA) $(DEMO_CACHE) $(DEMO_RUN) _proc _docs
