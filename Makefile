# Two commands on a fresh machine: `make run` (install + serve) and `make test` (install + test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install browser-deps cluster-deps deploy-tools bench-deps lint bench clean

STAMP_TEST := $(VENV)/.installed-test

# The gateway itself: CPU torch first, pinned (an unpinned torch pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps 'pipecat-ai==1.14.0'  # only for Smart Turn's ONNX file: engines/smart_turn.py
	touch $(STAMP)

# Tests also need the local-llm extra: llama-cpp-python compiles, about 6 minutes on 2 cores, as a portable
# build, since a native one can crash (general protection fault in libggml-cpu); --no-cache-dir so no
# earlier native wheel is reused.
$(STAMP_TEST): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-cache-dir 'llama-cpp-python[server]>=0.3'
	$(BIN)/pip install --quiet -e '.[test,bench,local-llm]'
	touch $(STAMP_TEST)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/voice-gateway serve $(ARGS)

test: $(STAMP_TEST) browser-deps cluster-deps deploy-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Cluster tests (tests/cluster): Debian's redis-server, coturn and nats-server, installed when missing (as root);
# without them those tests are skipped (outside CI).
cluster-deps:
	@{ command -v redis-server && command -v turnserver && command -v nats-server; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server coturn nats-server; \
	  else echo "cluster tests need: sudo apt-get install redis-server coturn nats-server" >&2; fi; }

# checkov (tests/deploy) in a virtualenv of its own: its pins would downgrade the gateway's networkx and packaging.
DEPLOY_VENV ?= .venv-deploy
$(DEPLOY_VENV)/.installed:
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet 'checkov>=3.2'
	touch $@

deploy-tools: $(DEPLOY_VENV)/.installed

# The Pipecat peer of benchmarks/capacity.py (benchmarks/pipecat_bot.py) in a virtualenv of its own: a real
# Pipecat bot needs its own aiortc, faster-whisper, piper-tts and onnxruntime pins, which must not move the
# gateway's. The models are the gateway's (its venv's packages), passed to the bot by path.
PIPECAT_VENV ?= .venv-pipecat
$(PIPECAT_VENV)/.installed:
	$(PYTHON) -m venv $(PIPECAT_VENV)
	$(PIPECAT_VENV)/bin/pip install --quiet --upgrade pip
	$(PIPECAT_VENV)/bin/pip install --quiet 'pipecat-ai[silero,whisper,piper,webrtc]==1.14.0'
	touch $@

# ... and the gateway's venv with the bench extra (matplotlib for the plots), without the test extra's build.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

bench-deps: $(VENV)/.installed-bench $(PIPECAT_VENV)/.installed

# Browser tests (tests/browser): Debian's Chromium, installed when missing (as root), and the OpenAI Agents
# SDK from npm. Without them those tests are skipped (outside CI).
BROWSER_NPM := tests/browser/node_modules/.package-lock.json

browser-deps: $(BROWSER_NPM)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "browser tests need Chromium: sudo apt-get install chromium" >&2; fi; }

$(BROWSER_NPM): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null; then cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && touch $(CURDIR)/$@; \
	else echo "browser tests need Node.js and npm (Debian: nodejs, npm)" >&2; fi

# Style, types (strict), and the layer contracts of pyproject.toml's [tool.importlinter] (dependencies point down).
lint: $(STAMP_TEST)
	$(BIN)/ruff check gateway signaling media engines qa tests benchmarks
	$(BIN)/mypy gateway signaling media engines qa
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) $(PIPECAT_VENV) .pytest_cache .mypy_cache .ruff_cache
