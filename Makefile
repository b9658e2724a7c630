# Two commands: `make demo` and `make test`. Both create .venv and install once; a second run reinstalls nothing.
SHELL  := /bin/bash
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test reproduce results bench gpu-check clean

install: $(STAMP)

# constraints.txt: the exact versions our machines run (torch the CPU build); pyproject.toml has the ranges users get.
# The embedded default model and data come from the command pip users run (their versions: src/ssrtune/embedded.py).
$(STAMP): pyproject.toml constraints.txt src/ssrtune/embedded.py Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,ifeval]'
	$(VENV)/bin/ssrtune embedded install
	touch $(STAMP)

demo: install
	$(VENV)/bin/ssrtune run configs/quickstart.yaml

# Two workers, a test file each at a time (module fixtures built once): most tests wait on a process start or a
# subprocess, so two use both cores of our 2-core machines (4 min 01 s against 6 min 00 s in one process, on the
# AVX512-BF16 kind, 563 tests).
test: install
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

# Issue 11's experiment (configs/reproduce.yaml), hours on a CPU, continued from its results ledger (issue 24:
# results/reproduce, docs/REPRODUCING.md) in $(REPRODUCE_DIR)/<CPU kind>; each finished model is recorded there at once,
# to be committed. BUDGET=75 stops cleanly between models once 75 minutes would be passed. A ledger's rows share one
# precision (the config's model.dtype). Its console, each line stamped with the wall-clock time, is appended to
# $(REPRODUCE_DIR)/console.log; the wall time of every stage is in the run directory's timings.json.
REPRODUCE_DIR := runs/reproduce
reproduce: install
	mkdir -p $(REPRODUCE_DIR)
	set -o pipefail; PYTHONUNBUFFERED=1 $(VENV)/bin/ssrtune reproduce configs/reproduce.yaml \
		--run-dir $(REPRODUCE_DIR) $(if $(BUDGET),--budget $(BUDGET)) 2>&1 \
		| while IFS= read -r line; do printf '%s %s\n' "$$(date '+%F %T')" "$$line"; done | tee -a $(REPRODUCE_DIR)/console.log

# docs/RESULTS.md and its figures from the ledger, at any point of the experiment (pending rows named): the ledger
# restored without weights into $(REPRODUCE_DIR)/results/<CPU kind>, no model loaded.
results: install
	$(VENV)/bin/ssrtune results $(REPRODUCE_DIR)/results --ledger results/reproduce --config configs/reproduce.yaml \
		--design docs/results/design.md --margin -0.05 $(if $(wildcard docs/results/discussion.md),--discussion docs/results/discussion.md)

# The three benchmarks of docs/PERFORMANCE.md; each prints one line and writes bench/results/<name>.json.
bench: install
	$(PYTHON) bench/generate.py
	$(PYTHON) bench/train.py
	$(PYTHON) bench/pipeline.py

# Every stage of `ssrtune run` on a CUDA GPU, timed (bench/gpu.py; its docstring says how to carry the dependencies to a
# GPU machine without network). Uses .venv where there is one, else the machine's python3.
gpu-check:
	$(if $(wildcard $(PYTHON)),$(PYTHON),python3) bench/gpu.py

clean:
	rm -rf $(VENV) runs
