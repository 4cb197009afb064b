"""Several models on image files: one that a model fails on is its own error, the rest are
answered."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from training.data.preprocess import Normalizer
from training.models.checkpoint import ModelBundle
from training.scoring.files import score_files_multi


class _FailsOnBright(torch.nn.Module):
    """A model that raises on any batch holding a bright image, and answers the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.mean(dim=(1, 2, 3)) > 1.0).any()):
            raise RuntimeError("cannot run this image")
        return x.mean(dim=(1, 2, 3)) * self.scale


def test_an_image_the_model_fails_on_is_its_own_error_row(tmp_path) -> None:

    paths = []
    for i, level in enumerate((10, 250, 30, 40)):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (16, 16), level).save(paths[-1])
    bundle = ModelBundle(_FailsOnBright(), "cnn", 16, Normalizer())
    scored = score_files_multi([bundle], paths)
    assert scored.errors == {1: "cannot score image: RuntimeError: cannot run this image"}
    assert torch.isnan(scored.probs[0, 1]) and torch.isfinite(scored.probs[0, [0, 2, 3]]).all()


def test_a_model_that_fails_on_every_image_fails_the_chunk(tmp_path) -> None:
    """Not one error row per image: the chunk fails, so it is retried and then recorded lost."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (16, 16), 250).save(paths[-1])
    bundle = ModelBundle(_FailsOnBright(), "cnn", 16, Normalizer())
    with pytest.raises(RuntimeError, match="cannot run this image"):
        score_files_multi([bundle], paths)
