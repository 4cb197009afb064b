"""On a CUDA device, training keeps its split and checkpoint format in every precision.

Skipped where no GPU is visible; they run on a lent GPU machine (BENCHMARKS.md, "GPU
workers")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda:0")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_the_gpu_keeps_the_split_and_the_checkpoint_format(
    precision: str, tiny_dataset: Path
) -> None:
    from training.fitting.config import make_config
    from training.fitting.fit import fit
    from training.models.checkpoint import from_bytes, to_bytes

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no native bf16 on this GPU")
    config = make_config("cnn", img_size=32, epochs=2, batch_size=8, precision=precision)
    on_gpu = fit(config, tiny_dataset, device=CUDA)
    cpu_config = make_config("cnn", img_size=32, epochs=1, batch_size=8)
    on_cpu = fit(cpu_config, tiny_dataset, device=torch.device("cpu"))
    assert on_gpu.data["fingerprint"] == on_cpu.data["fingerprint"]
    assert on_gpu.data["n_train_balanced"] == on_cpu.data["n_train_balanced"]
    assert on_gpu.data["precision_used"] == precision
    back = from_bytes(to_bytes(on_gpu.bundle))  # loads on a CPU-only worker
    assert next(back.model.parameters()).device.type == "cpu"
    assert all(torch.isfinite(p).all() for p in back.model.parameters())
