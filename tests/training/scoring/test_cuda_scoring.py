"""On a CUDA device, scoring agrees with the CPU.

Skipped where no GPU is visible; they run on a lent GPU machine (BENCHMARKS.md, "GPU
workers")."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.conftest import make_xray

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda:0")


def _bundle(arch: str, size: int):  # noqa: ANN202
    from training.models.checkpoint import ModelBundle
    from training.models.registry import create_model, normalizer_for
    from training.scoring.inference import fold_batchnorm

    torch.manual_seed(0)
    model = fold_batchnorm(create_model(arch, size, kind_head="two").eval())
    return ModelBundle(model, arch, size, normalizer_for(arch))


@pytest.mark.parametrize(("arch", "size"), [("cnn", 32), ("googlenet", 64)])
def test_p_on_the_gpu_equals_the_cpu_to_1e_4_in_fp32(arch: str, size: int, tmp_path: Path) -> None:
    from training.scoring.files import score_files_multi

    paths = [make_xray(tmp_path / f"x{i}.png", i % 2 == 0, seed=i, size=96) for i in range(150)]
    (tmp_path / "bad.png").write_bytes(b"no")
    paths.append(tmp_path / "bad.png")
    cpu = _bundle(arch, size)
    gpu = copy.deepcopy(cpu)
    gpu.model = gpu.model.to(CUDA)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        on_cpu = score_files_multi([cpu], paths)
        on_gpu = score_files_multi([gpu], paths)  # the streamed, pinned decode path
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert on_gpu.errors == on_cpu.errors and list(on_gpu.errors) == [150]
    ok = torch.isfinite(on_cpu.probs)
    assert torch.equal(ok, torch.isfinite(on_gpu.probs))
    assert (on_gpu.probs[ok] - on_cpu.probs[ok]).abs().max() <= 1e-4
    assert (on_gpu.viral[ok] - on_cpu.viral[ok]).abs().max() <= 1e-4
