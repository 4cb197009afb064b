"""Batched inference: decoded uint8 images or image files -> P(PNEUMONIA)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from training.checkpoint import ModelBundle
from training.preprocess import Normalizer, decode_many


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_proba(
    model: nn.Module, images: torch.Tensor, normalizer: Normalizer, batch_size: int = 256
) -> torch.Tensor:
    """P(PNEUMONIA) for a uint8 (N, 3, S, S) tensor, as a float CPU tensor of shape (N,)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = normalizer(images[start : start + batch_size].to(device, non_blocking=True))
        out.append(torch.sigmoid(model(batch).float()).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@dataclass(frozen=True)
class ImageScore:
    path: str
    prob: float | None  # None when the image could not be read
    label: int | None
    error: str | None = None


def score_files(
    bundle: ModelBundle, paths: Sequence[str | os.PathLike], batch_size: int = 256
) -> list[ImageScore]:
    """Score files in order; an unreadable file becomes an ImageScore with its error."""
    results: list[ImageScore] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        decoded = decode_many(chunk, bundle.img_size)
        probs = predict_proba(bundle.model, decoded.tensor, bundle.normalizer, batch_size)
        by_pos = dict(zip(decoded.ok_index, probs.tolist(), strict=True))
        for pos, path in enumerate(chunk):
            if pos in by_pos:
                prob = by_pos[pos]
                results.append(ImageScore(str(path), prob, int(prob >= bundle.threshold)))
            else:
                results.append(ImageScore(str(path), None, None, decoded.errors[pos]))
    return results
