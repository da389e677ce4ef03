"""Which device the models run on: ``engines.device`` (``auto`` | ``cpu`` | ``cuda``) resolved once, at load.

``auto`` is CUDA when CTranslate2 counts a CUDA device, else the CPU. ``cuda`` asked for on a machine without
one is an :class:`~engines.errors.EngineLoadError` naming the setting at start-up, instead of CTranslate2's
"CUDA driver version is insufficient" (or a crash) deep inside the first model load.
"""

from __future__ import annotations

import logging

import ctranslate2

from engines.errors import EngineLoadError

logger = logging.getLogger(__name__)


def cuda_device_count() -> int:
    """CUDA devices CTranslate2 can use (0 without a driver, or with a CPU-only build)."""
    try:
        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # a CPU-only build or a broken driver: no GPU for us
        return 0


def resolve_device(requested: str, component: str = "asr") -> str:
    """``auto`` → ``cuda`` or ``cpu``; ``cuda`` without a device → :class:`EngineLoadError`."""
    if requested not in ("auto", "cpu", "cuda"):
        raise EngineLoadError(component, f"engines.device must be auto, cpu or cuda, not {requested!r}")
    count = cuda_device_count() if requested != "cpu" else 0
    if requested == "cuda" and count == 0:
        raise EngineLoadError(
            component, "engines.device = cuda, but CTranslate2 sees no CUDA device (no NVIDIA GPU or driver, or a "
            "CPU-only ctranslate2 wheel); set engines.device = auto or cpu")
    device = "cuda" if requested == "cuda" or (requested == "auto" and count > 0) else "cpu"
    logger.info("engines.device = %s: models run on %s (%d CUDA device(s) seen)", requested, device, count)
    return device


def onnx_providers(device: str) -> list[str]:
    """onnxruntime providers for ``device``: CUDA first when it is asked for and this onnxruntime has it."""
    import onnxruntime

    if device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        logger.warning("engines.device = cuda, but this onnxruntime has no CUDAExecutionProvider "
                       "(install onnxruntime-gpu): Piper runs on the CPU")
    return ["CPUExecutionProvider"]


#: CTranslate2 compute types with no CPU kernels ("does not support efficient float16 computation").
GPU_ONLY_COMPUTE_TYPES = ("float16", "int8_float16", "bfloat16", "int8_bfloat16")


def compute_type_for(device: str, compute_type: str) -> str:
    """``compute_type``, or ``int8`` for a GPU-only one when ``auto`` resolved to the CPU (one config, any host).

    The configuration refuses a GPU-only type with an explicit ``device = cpu``; this covers ``auto``.
    """
    if device == "cpu" and compute_type in GPU_ONLY_COMPUTE_TYPES:
        logger.warning("engines.whisper_compute_type = %s needs a GPU; on the CPU Whisper uses int8", compute_type)
        return "int8"
    return compute_type
