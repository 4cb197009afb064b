"""Training-time augmentation on batches of cached tensors.

The seed recipe: NORMAL is balanced to 50/50 with horizontally/vertically flipped copies, and
every training image gets a random rotation of up to ±5 degrees. The tuned recipe adds zoom,
shift and brightness/contrast jitter. Flips are index bookkeeping on
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
    """Flip each image of an (N, C, H, W) batch by its code; returns a new tensor. Selects
    with `where`, not a mask, so a batch on a GPU never waits for the host."""
    flip = flip.to(batch.device, non_blocking=True).view(-1, 1, 1, 1)
    out = torch.where((flip == 1) | (flip == 3), batch.flip(-1), batch)
    return torch.where((flip == 2) | (flip == 3), out.flip(-2), out)


def _on(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per-image values drawn on the host, sent to the batch's device without a wait."""
    return values.to(device=batch.device, dtype=batch.dtype, non_blocking=True)


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (high - low) + low


def random_rotate(
    batch: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rotate each float image by its own uniform angle in [-max, max]; corners fill with 0."""
    return random_affine(batch, max_degrees, 0.0, 0.0, generator)


def random_affine(
    batch: torch.Tensor,
    max_degrees: float,
    max_scale: float = 0.0,
    max_shift: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-image random rotation (±degrees), zoom (1 ± max_scale) and shift (± fraction)."""
    if max_degrees <= 0 and max_scale <= 0 and max_shift <= 0:
        return batch
    n = batch.shape[0]
    angles = _uniform(n, -1, 1, generator) * math.radians(max_degrees)
    zoom = 1.0 / _uniform(n, 1 - max_scale, 1 + max_scale, generator)
    shift = _uniform(2 * n, -2 * max_shift, 2 * max_shift, generator).view(2, n)  # grid is [-1,1]
    cos, sin = torch.cos(angles) * zoom, torch.sin(angles) * zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1
    )
    theta = _on(theta, batch)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_jitter(
    batch: torch.Tensor, brightness: float, contrast: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Scale each image's brightness and contrast by 1 ± the given amounts; stays in [0, 1]."""
    if brightness <= 0 and contrast <= 0:
        return batch
    n = batch.shape[0]
    b = _on(_uniform(n, 1 - brightness, 1 + brightness, generator).view(n, 1, 1, 1), batch)
    c = _on(_uniform(n, 1 - contrast, 1 + contrast, generator).view(n, 1, 1, 1), batch)
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    return ((batch - mean) * c + mean * b).clamp_(0.0, 1.0)


def random_photometric(
    batch: torch.Tensor, strength: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Acquisition-like changes scaled by `strength` (0.3 is moderate): gamma in
    exp(±strength), blur or sharpen up to ±2*strength, Gaussian noise up to 0.1*strength std.
    Other hospitals' detectors differ in exactly these; the model should not key on them."""
    if strength <= 0:
        return batch
    n = batch.shape[0]
    shape = (n, 1, 1, 1)
    gamma = _on(torch.exp(_uniform(n, -strength, strength, generator)).view(shape), batch)
    x = batch.clamp(min=1e-6).pow(gamma)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    # amount < 0 blurs towards the 3x3 mean (at most fully), > 0 sharpens (unsharp mask).
    amount = _uniform(n, -2 * strength, 2 * strength, generator).clamp(min=-1.0)
    x = x + _on(amount.view(shape), batch) * (x - blurred)
    sigma = _on(_uniform(n, 0.0, 0.1 * strength, generator).view(shape), batch)
    return (x + sigma * _noise(x, generator)).clamp_(0.0, 1.0)


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn where x lives: on a GPU from a device
    generator seeded from the host one (still one stream per seed), since drawing a batch of
    224-px noise on the host and copying it would cost more than the training step."""
    if x.device.type == "cpu" or generator is None:
        return torch.randn(x.shape, generator=generator).to(x)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    device_gen = torch.Generator(device=x.device).manual_seed(seed)
    return torch.randn(x.shape, generator=device_gen, device=x.device, dtype=x.dtype)


def balanced_sample(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One epoch's indices, as many as there are images, each drawn from a class chosen 50/50
    (with replacement), so every batch is balanced in expectation without copies or weights."""
    n = labels.numel()
    pools = [torch.nonzero(labels == c).flatten() for c in (0, 1)]
    classes = torch.rand(n, generator=generator) < 0.5
    out = torch.empty(n, dtype=torch.long)
    for c, pool in enumerate(pools):
        where = classes if c == 1 else ~classes
        picks = torch.randint(pool.numel(), (int(where.sum()),), generator=generator)
        out[where] = pool[picks]
    return out
