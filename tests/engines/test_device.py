"""``engines.device``: ``auto`` resolves to the CPU here; ``cuda`` without a GPU is a clear start-up error."""

from __future__ import annotations

import logging

import ctranslate2
import pytest

from engines.devices import onnx_providers, resolve_device
from engines.errors import EngineLoadError
from gateway.app.engines import load_engines
from gateway.config.loader import build_config

NO_GPU = ctranslate2.get_cuda_device_count() == 0
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA device")


@needs_no_gpu
def test_auto_resolves_to_the_cpu_without_a_cuda_device_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="engines.devices"):
        assert resolve_device("auto") == "cpu"
    assert "models run on cpu" in caplog.text
    assert resolve_device("cpu") == "cpu"
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


@needs_no_gpu
def test_cuda_without_a_device_fails_at_start_up_naming_the_setting() -> None:
    config = build_config({"engines": {"device": "cuda"}})
    with pytest.raises(EngineLoadError) as caught:
        load_engines(config)
    assert "engines.device = cuda" in str(caught.value) and "no CUDA device" in str(caught.value)


def test_an_unknown_device_is_refused() -> None:
    with pytest.raises(EngineLoadError):
        resolve_device("tpu")


def test_cuda_onnx_providers_fall_back_to_the_cpu_without_onnxruntime_gpu() -> None:
    import onnxruntime

    providers = onnx_providers("cuda")
    assert providers[-1] == "CPUExecutionProvider"
    assert ("CUDAExecutionProvider" in providers) == ("CUDAExecutionProvider" in onnxruntime.get_available_providers())


@needs_no_gpu
def test_the_loaded_engines_report_their_device() -> None:
    from engines.piper_tts import PiperSynthesizer
    from engines.whisper import WhisperRecognizer

    asr = WhisperRecognizer(device="auto")
    tts = PiperSynthesizer(device="auto")
    try:
        assert asr.device == "cpu" and tts.device == "cpu"
    finally:
        asr.close()
        tts.close()


@needs_no_gpu
async def test_readyz_reports_where_the_engines_run(gateway_url: str) -> None:
    from tests.support.ops import get_json

    status, body = await get_json(gateway_url, "/readyz")
    assert status == 200 and body["devices"] == {"asr": "cpu", "tts": "cpu"}


@needs_no_gpu
def test_a_gpu_compute_type_with_auto_falls_back_to_int8_on_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    from engines.whisper import WhisperRecognizer

    with caplog.at_level(logging.WARNING, logger="engines.devices"):
        asr = WhisperRecognizer(device="auto", compute_type="int8_float16")
    try:
        assert (asr.device, asr.compute_type) == ("cpu", "int8")
        assert "needs a GPU" in caplog.text
    finally:
        asr.close()


def test_load_engines_passes_the_device_settings_to_whisper() -> None:
    engines = load_engines(build_config({"engines": {"device": "cpu", "asr_batching": False}}))
    try:
        from engines.whisper import WhisperRecognizer

        asr = engines.asr
        assert isinstance(asr, WhisperRecognizer)
        assert (asr.device, asr.compute_type, asr._batching) == ("cpu", "int8", False)
    finally:
        engines.close()
