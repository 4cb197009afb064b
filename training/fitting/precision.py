"""The mixed-precision choice of a training run: bfloat16 autocast, or float32.

from training.fitting.precision import amp_dtype
dtype = amp_dtype(config, device)  # None: run in float32
with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
    out = model(images)
"""

from __future__ import annotations

import torch

from training.fitting.config import TrainConfig


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast where the hardware runs it natively (AVX512-BF16/AMX CPUs, recent
    GPUs), else None: emulated bf16 would be slower than float32."""
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None
