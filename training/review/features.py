"""What the review measures (training.review): a model's penultimate features, caught by a
hook on its head, and cheap statistics of the decoded image; the Gaussians and the orientation
check that turn them into distances from the training images."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.fitting.logistic import fit_balanced_logistic

THUMB = 16  # thumbnail side


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier's head: the last nn.Linear registered (every arch here ends in one)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError("model has no linear head to read features from")
    return heads[-1]


@contextmanager
def feature_tap(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the input of the model's head (its penultimate features) on every forward
    this thread runs."""
    caught: list[torch.Tensor] = []
    # A served model is shared: forwards run by other threads are theirs, not this batch's.
    caller = threading.get_ident()

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if threading.get_ident() == caller:
            caught.append(args[0].detach().flatten(1).float().cpu())

    handle = last_linear(model).register_forward_pre_hook(hook)
    try:
        yield caught
    finally:
        handle.remove()


# Images per pass: the float copies of a whole 224-px training split (~4,000 images) took
# ~20 GB at once and were killed; in slices the memory is that of one slice.
STATS_SLICE = 256


def image_statistics(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """uint8 (N, 3, S, S) -> saturation (N,), log fine detail (N,), grey thumbnails (N, 256)."""
    starts = range(0, max(len(images), 1), STATS_SLICE)  # an empty batch is one empty slice
    parts = [_slice_statistics(images[i : i + STATS_SLICE]) for i in starts]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def _slice_statistics(images: torch.Tensor) -> dict[str, torch.Tensor]:
    x = images.float().div(255.0)
    saturation = (x.amax(1) - x.amin(1)).mean((1, 2))
    grey = x.mean(1, keepdim=True)
    laplace = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    detail = F.conv2d(grey, laplace).abs().mean((1, 2, 3)).add(1e-4).log()
    thumb = F.adaptive_avg_pool2d(grey, THUMB).flatten(1)
    return {"saturation": saturation, "detail": detail, "thumbnail": thumb}


@dataclass
class Gaussian:
    """Class means and one shared covariance: its top principal directions each with their own
    variance, the rest with their mean variance (a shrunk, storable Mahalanobis distance)."""

    means: torch.Tensor  # (C, D)
    basis: torch.Tensor  # (D, k)
    variances: torch.Tensor  # (k,)
    residual: float

    @classmethod
    def fit(cls, x: torch.Tensor, labels: torch.Tensor, directions: int) -> Gaussian:
        x = x.double()
        classes = sorted(int(c) for c in labels.unique())
        means = torch.stack([x[labels == c].mean(0) for c in classes])
        centred = x - means[torch.searchsorted(torch.tensor(classes), labels)]
        cov = centred.T @ centred / max(len(x) - len(classes), 1)
        values, vectors = torch.linalg.eigh(cov)  # ascending
        k = min(directions, x.shape[1] - 1)
        floor = max(float(values.clamp(min=0).mean()), 1e-12) * 1e-3
        rest = values[: x.shape[1] - k].clamp(min=0)
        return cls(
            means.float(),
            vectors[:, -k:].float(),
            values[-k:].clamp(min=floor).float(),
            max(float(rest.mean()) if len(rest) else floor, floor),
        )

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) Mahalanobis distances, per dimension (so ~1 for a typical training image)."""
        out = []
        for mean in self.means:
            d = x.float() - mean
            proj = d @ self.basis
            resid = (d * d).sum(1) - (proj * proj).sum(1)
            sq = (proj * proj / self.variances).sum(1) + resid.clamp(min=0) / self.residual
            out.append((sq / x.shape[1]).sqrt())
        return torch.stack(out, 1)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.means": self.means,
            f"{prefix}.basis": self.basis,
            f"{prefix}.variances": self.variances,
            f"{prefix}.residual": torch.tensor([self.residual]),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> Gaussian:
        return cls(
            tensors[f"{prefix}.means"],
            tensors[f"{prefix}.basis"],
            tensors[f"{prefix}.variances"],
            float(tensors[f"{prefix}.residual"][0]),
        )


def correlation(rows: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row with the template. A Gaussian cannot tell an inverted
    film from a normal one (x - mean and mean - x are equally far); this can: a chest X-ray
    follows the training images' mean layout, its negative runs against it."""
    a = rows - rows.mean(1, keepdim=True)
    b = template - template.mean()
    return (a @ b) / (a.norm(dim=1) * b.norm()).clamp(min=1e-8)


def fit_orientation(thumbs: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A logistic regression on thumbnails: the training images as they are against the same
    images upside down, turned 90 degrees either way and inverted (the ways films arrive
    broken). Returns (weights, bias) of its logit, the standardisation folded in."""
    grid = thumbs.view(-1, THUMB, THUMB).double()
    turned = [grid.rot90(2, (1, 2)), grid.rot90(1, (1, 2)), grid.rot90(3, (1, 2)), 1 - grid]
    x = torch.cat([grid, *turned]).flatten(1)
    y = torch.cat([torch.zeros(len(grid)), torch.ones(len(grid) * len(turned))]).double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    weights, bias = fit_balanced_logistic((x - mean) / std, y, l2=1e-3)
    w = weights / std
    return w.float(), float(bias - (mean * w).sum())
