"""Training-time augmentation on batches of cached tensors.

The seed recipe: NORMAL is balanced to 50/50 with horizontally/vertically flipped copies, and
every training image gets a random rotation of up to ±5 degrees. Flips are index bookkeeping on
the cached uint8 tensor; rotation is one batched `grid_sample`, far cheaper than per-image PIL.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Flip codes: 0 = none, 1 = horizontal, 2 = vertical, 3 = both. Extra copies cycle through 1, 2, 3.
_COPY_FLIPS = (1, 2, 3)


def balance_with_flips(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and flip codes that add flipped copies of the minority class until 50/50.

    Returns (index, flip) of equal length: every original once with flip 0, then copies.
    """
    n = labels.numel()
    index = torch.arange(n)
    flip = torch.zeros(n, dtype=torch.long)
    counts = torch.bincount(labels.long(), minlength=2)
    minority = int(torch.argmin(counts))
    missing = int(counts.max() - counts.min())
    if missing == 0 or counts.min() == 0:
        return index, flip
    pool = torch.nonzero(labels == minority).flatten()
    gen = torch.Generator().manual_seed(seed)
    pool = pool[torch.randperm(pool.numel(), generator=gen)]
    extra = torch.arange(missing)
    extra_index = pool[extra % pool.numel()]
    extra_flip = torch.tensor(_COPY_FLIPS)[(extra // pool.numel()) % len(_COPY_FLIPS)]
    return torch.cat([index, extra_index]), torch.cat([flip, extra_flip])


def apply_flips(batch: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flip each image of an (N, C, H, W) batch by its code; returns a new tensor."""
    out = batch.clone()
    h = (flip == 1) | (flip == 3)
    v = (flip == 2) | (flip == 3)
    if h.any():
        out[h] = out[h].flip(-1)
    if v.any():
        out[v] = out[v].flip(-2)
    return out


def random_rotate(
    batch: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each float image by its own uniform angle in [-max, max]; corners fill with 0."""
    if max_degrees <= 0:
        return batch
    n = batch.shape[0]
    angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    theta = theta.to(dtype=batch.dtype, device=batch.device)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
