"""``engines.device``, ``engines.whisper_compute_type`` and ``engines.asr_batching``: where the models run.

In a module of its own so that schema.py stays under 400 lines. The values are checked here; which device
``auto`` becomes is decided when the engines load (engines/devices.py), since only then is CTranslate2 asked.
"""

from __future__ import annotations

from gateway.config.errors import require as _require

#: ``engines.device``: ``auto`` is CUDA when CTranslate2 sees a CUDA device, else the CPU.
DEVICES = ("auto", "cpu", "cuda")

#: ``engines.whisper_compute_type``: CTranslate2's compute types (``default`` keeps the model's stored type).
WHISPER_COMPUTE_TYPES = (
    "default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
    "float32",
)

#: Compute types CTranslate2 has no CPU kernels for (it would fail, or silently convert, at load).
GPU_ONLY_COMPUTE_TYPES = ("float16", "int8_float16", "bfloat16", "int8_bfloat16")


def check_devices(device: str, compute_type: str) -> None:
    """The device is one of :data:`DEVICES`; the compute type is CTranslate2's and fits an explicit CPU."""
    _require(device in DEVICES, "engines.device", f"must be one of {', '.join(DEVICES)}")
    _require(compute_type in WHISPER_COMPUTE_TYPES, "engines.whisper_compute_type",
             f"must be one of {', '.join(WHISPER_COMPUTE_TYPES)}")
    _require(not (device == "cpu" and compute_type in GPU_ONLY_COMPUTE_TYPES), "engines.whisper_compute_type",
             f"{compute_type} needs engines.device = cuda (or auto on a GPU machine); on the CPU use int8 or float32")
