"""Decoding and preprocessing: the one eval-time transform shared by training and serving.

`decode_image` turns a file into a uint8 tensor of shape (3, size, size); `Normalizer` turns a
uint8 batch into the float input a model expects. Training caches decoded uint8 tensors and
normalises per batch, serving does the same per batch, so the two paths cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from PIL import Image, UnidentifiedImageError

from training.equalize import equalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageDecodeError(Exception):
    """A file that is not a readable image; the message is one line fit for an error row."""


def decode_image(
    path: str | os.PathLike, size: int, equalize_mode: str = "none", crop: float = 1.0
) -> torch.Tensor:
    """Read an image file as a (3, size, size) uint8 RGB tensor, squashing the aspect ratio;
    `crop` < 1 keeps that central fraction of each side first (where the lungs are, away from
    borders and burnt-in markers); `equalize_mode` (training.equalize) maps contrast on a
    2*size copy."""
    try:
        with Image.open(path) as img:
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for a fraction of the cost; asking for
            # twice the target keeps enough pixels for the antialiased resize below.
            img.draft(img.mode, (2 * size, 2 * size))
            if crop < 1.0:
                img = img.crop(central_box(img.size, crop))
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            if equalize_mode != "none":
                # One working resolution for every source size, so a 224 px training image and
                # a 3000 px clinical file are equalised alike.
                img = img.resize((2 * size, 2 * size), Image.Resampling.BILINEAR)
                img = equalize(img, equalize_mode)
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            if img.mode != "RGB":
                img = img.convert("RGB")
            data = img.tobytes()
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"file not found: {exc.filename}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(f"cannot decode image: {reason}") from None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def central_box(wh: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box keeping the central `fraction` of each side."""
    w, h = wh
    dx, dy = round(w * (1 - fraction) / 2), round(h * (1 - fraction) / 2)
    return dx, dy, w - dx, h - dy


@dataclass
class DecodedBatch:
    """Images that decoded, stacked, and the reason for each one that did not."""

    tensor: torch.Tensor  # (n_ok, 3, size, size) uint8
    ok_index: list[int]  # position in the input of each stacked image
    errors: dict[int, str] = field(default_factory=dict)  # input position -> reason


def decode_many(
    paths: Sequence[str | os.PathLike],
    size: int,
    threads: int = 0,
    equalize_mode: str = "none",
    crop: float = 1.0,
) -> DecodedBatch:
    """Decode many files with a thread pool (PIL releases the GIL while decoding)."""
    threads = threads or min(8, os.cpu_count() or 1)

    def one(path: str | os.PathLike) -> torch.Tensor | str:
        try:
            return decode_image(path, size, equalize_mode, crop)
        except ImageDecodeError as exc:
            return str(exc)

    if threads > 1 and len(paths) > 1:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, paths))
    else:
        results = [one(p) for p in paths]
    ok_index = [i for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
    errors = {i: r for i, r in enumerate(results) if isinstance(r, str)}
    stacked = (
        torch.stack([results[i] for i in ok_index])
        if ok_index
        else torch.empty((0, 3, size, size), dtype=torch.uint8)
    )
    return DecodedBatch(stacked.contiguous(), ok_index, errors)


@dataclass(frozen=True)
class Normalizer:
    """uint8 (N, 3, H, W) -> float32 normalised; the statistics travel with each model."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.from_unit(batch.float().div_(255.0))

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a float batch already scaled to [0, 1] (in place)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)
