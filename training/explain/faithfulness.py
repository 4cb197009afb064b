"""Checks that heatmaps are faithful to the model rather than pretty.

    from training.explain.faithfulness import deletion_drop, randomization_check
    drop = deletion_drop(model, images_uint8, normalizer, maps)     # hot vs random deletion
    rand = randomization_check(model, twin, arch, images_uint8, normalizer)

`deletion_drop`: blurring the hottest pixels must lower P(PNEUMONIA) more than blurring as many
pixels elsewhere. `randomization_check`: a model with random weights must give different maps
(Adebayo et al. 2018). benchmarks/explain_faithfulness.py runs both on the test set.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.data.preprocess import Normalizer
from training.explain.gradcam import explain_batch, resize_maps
from training.models.registry import pneumonia_logit


@torch.inference_mode()
def _logits(
    model: nn.Module, images_uint8: torch.Tensor, normalizer: Normalizer, batch_size: int = 64
) -> torch.Tensor:
    """The (N,) pneumonia logit of a uint8 batch, for any head, as float on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, images_uint8.shape[0], batch_size):
        x = normalizer(images_uint8[start : start + batch_size].to(device))
        x = x.contiguous(memory_format=torch.channels_last)
        out.append(pneumonia_logit(model(x)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def blurred(images_uint8: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A strongly blurred copy (Gaussian, sigma = side / 8 by default), edges replicated."""
    size = images_uint8.shape[-1]
    sigma = sigma or max(size / 8, 1.0)
    radius = min(int(3 * sigma), size - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images_uint8.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).expand(3, 1, -1)  # one 1-D kernel per colour channel
    x = images_uint8.float()
    rows = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[..., None, :], groups=3
    )
    both = F.conv2d(
        F.pad(rows, (0, 0, radius, radius), mode="replicate"), kernel[..., None], groups=3
    )
    return both.round().clamp(0, 255).to(torch.uint8)


def _filler(images_uint8: torch.Tensor, fill: str) -> torch.Tensor:
    """What a deleted pixel becomes: "blur" (the blurred image) or "mean" (its mean grey)."""
    if fill == "blur":
        return blurred(images_uint8)
    if fill == "mean":
        mean = images_uint8.float().mean(dim=(1, 2, 3), keepdim=True).round()
        return mean.expand_as(images_uint8).to(torch.uint8)
    raise ValueError(f"unknown fill {fill!r}; choose blur or mean")


def hottest_mask(maps: torch.Tensor, size: tuple[int, int], fraction: float) -> torch.Tensor:
    """(N, H, W) bool: the `fraction` of pixels where each upsampled map is hottest."""
    up = resize_maps(maps, size).flatten(1)
    k = max(1, round(fraction * up.shape[1]))
    mask = torch.zeros_like(up, dtype=torch.bool)
    mask.scatter_(1, up.topk(k, dim=1).indices, True)
    return mask.view(-1, *size)


def _random_placements(mask: torch.Tensor, placements: int, seed: int) -> list[torch.Tensor]:
    """The same mask shapes, each image's rolled (wrapping) by its own random offset."""
    gen = torch.Generator().manual_seed(seed)
    rolled = []
    for _ in range(placements):
        shifts = torch.randint(0, max(mask.shape[1:]), (mask.shape[0], 2), generator=gen)
        pairs = zip(mask, shifts.tolist(), strict=True)
        rolled.append(torch.stack([m.roll(tuple(s), dims=(0, 1)) for m, s in pairs]))
    return rolled


def deletion_drop(
    model: nn.Module,
    images_uint8: torch.Tensor,
    normalizer: Normalizer,
    maps: torch.Tensor,
    fraction: float = 0.1,
    placements: int = 5,
    seed: int = 0,
    fill: str = "blur",
) -> dict[str, float]:
    """How much P(PNEUMONIA) falls when the hottest `fraction` of pixels are deleted (replaced
    by a blurred copy, or with fill="mean" by the image's mean grey), against the same mask
    shape rolled to `placements` random offsets per image (seeded).

    Returns "n"; "hot_drop", "random_drop" (mean drops of P) and "ratio" (hot / random: inf
    when random deletion costs nothing and hot deletion does, nan when neither costs). P
    saturates near 1, which hides most of a confident model's drop, so also the same drops of
    the logit ("hot_logit_drop", "random_logit_drop") and "win_rate": the share of images
    whose logit falls more from the hot deletion than from the random ones on average."""
    if images_uint8.shape[0] == 0:
        raise ValueError("deletion_drop needs at least one image")
    mask = hottest_mask(maps, tuple(images_uint8.shape[-2:]), fraction)
    filler = _filler(images_uint8, fill)
    base = _logits(model, images_uint8, normalizer)

    def drops(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = _logits(model, torch.where(m[:, None], filler, images_uint8), normalizer)
        return torch.sigmoid(base) - torch.sigmoid(logit), base - logit

    hot_p, hot_logit = drops(mask)
    rand = [drops(m) for m in _random_placements(mask, placements, seed)]
    rand_p = torch.stack([p for p, _ in rand]).mean(0)
    rand_logit = torch.stack([lg for _, lg in rand]).mean(0)
    hot, rnd = float(hot_p.mean()), float(rand_p.mean())
    return {
        "n": int(mask.shape[0]),
        "hot_drop": hot,
        "random_drop": rnd,
        "ratio": _ratio(hot, rnd),
        "hot_logit_drop": float(hot_logit.mean()),
        "random_logit_drop": float(rand_logit.mean()),
        "win_rate": float((hot_logit > rand_logit).float().mean()),
    }


def _ratio(hot: float, rand: float) -> float:
    if rand > 1e-12:
        return hot / rand
    return math.inf if hot > 1e-12 else math.nan


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing their mean rank. Ties matter here:
    ReLU leaves many exact zeros, and ranking them by position would invent correlation."""
    ordered, order = values.double().sort()
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2
    ranks = torch.empty_like(ordered)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally sized tensors; nan when either is constant."""
    ra, rb = average_ranks(a.flatten()), average_ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else math.nan


def randomization_check(
    model_trained: nn.Module,
    model_random: nn.Module,
    arch: str,
    images: torch.Tensor,
    normalizer: Normalizer,
) -> dict[str, float]:
    """Model-randomisation sanity check (Adebayo et al. 2018): the mean Spearman correlation
    between each image's map from the trained model and from the same arch with random
    weights, both upsampled to the input size. Near 1 would mean the maps show the image,
    not what the model learned. Images where either map is constant are left out of "n"."""
    size = tuple(images.shape[-2:])
    trained = resize_maps(explain_batch(model_trained, arch, images, normalizer)[1], size)
    random = resize_maps(explain_batch(model_random, arch, images, normalizer)[1], size)
    rhos = [spearman(t, r) for t, r in zip(trained, random, strict=True)]
    rhos = [r for r in rhos if not math.isnan(r)]
    mean = sum(rhos) / len(rhos) if rhos else math.nan
    return {"n": len(rhos), "spearman_mean": mean}
