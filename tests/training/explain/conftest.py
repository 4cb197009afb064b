"""The heatmap tests run on one torch thread (their random batches and served models come from
tests.helpers)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # These tensors are tiny: a second thread gains nothing, and on a busy machine threads
    # waiting for each other made the module 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
