"""Shared by the heatmap tests: random uint8 batches, models as a worker serves them, and one
torch thread."""

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from training.models.registry import create_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # These tensors are tiny: a second thread gains nothing, and on a busy machine threads
    # waiting for each other made the module 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_batch(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def served_model(arch: str, size: int, kind_head: str = "none") -> nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, img_size=size, kind_head=kind_head).eval()
    return model.to(memory_format=torch.channels_last)
