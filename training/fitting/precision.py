"""The numeric precision of a training run: float32, bfloat16 or float16 autocast.

from training.fitting.precision import autocast_dtype, check_precision, precision_used
check_precision(config, device)  # PrecisionError (one line) where the device cannot run it
dtype = autocast_dtype(config, device)  # None: run in float32
with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
    out = model(images)
precision_used(config, device)  # "fp32", "bf16" or "fp16": what `auto` became here

config.precision: auto (bfloat16 where the hardware runs it natively, else float32), fp32,
bf16 (refused where it would be emulated) or fp16 (CUDA only; the loop scales the loss).
"""

from __future__ import annotations

import torch

from training.fitting.config import PRECISIONS, TrainConfig

DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


class PrecisionError(ValueError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback


def native_bf16(device: torch.device) -> bool:
    """Whether the device runs bfloat16 natively (AVX512-BF16/AMX CPUs, Ampere+ GPUs)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_used(config: TrainConfig, device: torch.device) -> str:
    """The precision the run gets on `device`: auto resolved, an unrunnable choice refused.

    auto is bf16 where native, else fp32: emulated bf16 would be slower than float32."""
    choice = config.precision
    if choice not in PRECISIONS:
        raise PrecisionError(f"unknown precision {choice!r}; choose one of {', '.join(PRECISIONS)}")
    if choice == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if choice == "bf16" and not native_bf16(device):
        where = "this GPU" if device.type == "cuda" else "this CPU"
        raise PrecisionError(f"bf16 is not native on {where}; use fp32 or auto")
    if choice == "fp16" and device.type != "cuda":
        raise PrecisionError("fp16 needs a CUDA device; use fp32 or bf16")
    return choice


def check_precision(config: TrainConfig, device: torch.device) -> None:
    """Raise PrecisionError now if `device` cannot run the config's precision."""
    precision_used(config, device)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the run on `device`, or None for plain float32."""
    return DTYPES[precision_used(config, device)]
