"""Contrast equalisation of grayscale X-rays, applied at decode time by training and serving.

Acquisition differs between hospitals and years (exposure, processing, film vs detector); mapping
each image through its own intensity histogram removes much of that before a model sees it.
`hist` is global histogram equalisation; `clahe` is contrast-limited adaptive equalisation
(Zuiderveld 1994) with OpenCV's defaults (8x8 tiles, clip limit 2), written here in numpy so no
image library beyond PIL is needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

EQUALIZE_MODES = ("none", "hist", "clahe")


def equalize(img: Image.Image, mode: str) -> Image.Image:
    """Equalise an "L" or "RGB" image's luminance; RGB input comes back as L."""
    if mode == "none":
        return img
    if mode not in EQUALIZE_MODES:
        raise ValueError(f"unknown equalize mode {mode!r}; choose one of {EQUALIZE_MODES}")
    gray = img.convert("L") if img.mode != "L" else img
    if mode == "hist":
        return ImageOps.equalize(gray)
    return Image.fromarray(clahe(np.asarray(gray)))


def _tile_luts(img: np.ndarray, grid: int, clip_limit: float) -> tuple[np.ndarray, int, int]:
    """(grid, grid, 256) lookup tables (each tile's clipped, redistributed histogram's CDF)
    and the tile height and width."""
    h, w = img.shape
    th, tw = -(-h // grid), -(-w // grid)
    padded = np.pad(img, ((0, th * grid - h), (0, tw * grid - w)), mode="reflect")
    tiles = padded.reshape(grid, th, grid, tw).transpose(0, 2, 1, 3).reshape(grid * grid, -1)
    offsets = (np.arange(grid * grid) * 256)[:, None]
    hist = np.bincount((tiles + offsets).ravel(), minlength=grid * grid * 256)
    hist = hist.reshape(grid * grid, 256).astype(np.float64)
    limit = max(clip_limit * th * tw / 256.0, 1.0)
    excess = np.clip(hist - limit, 0, None).sum(axis=1, keepdims=True)
    hist = np.minimum(hist, limit) + excess / 256.0
    cdf = hist.cumsum(axis=1)
    return (cdf * (255.0 / cdf[:, -1:])).reshape(grid, grid, 256), th, tw


def _neighbours(n: int, tile: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel coordinate: the two nearest tile centres and the weight of the second."""
    pos = (np.arange(n) + 0.5) / tile - 0.5
    lo = np.floor(pos).astype(int)
    weight = pos - lo
    return np.clip(lo, 0, grid - 1), np.clip(lo + 1, 0, grid - 1), weight


def clahe(img: np.ndarray, grid: int = 8, clip_limit: float = 2.0) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a 2-D uint8 array."""
    luts, th, tw = _tile_luts(img, grid, clip_limit)
    y0, y1, wy = _neighbours(img.shape[0], th, grid)
    x0, x1, wx = _neighbours(img.shape[1], tw, grid)
    wy, wx = wy[:, None], wx[None, :]
    y0, y1, x0, x1 = y0[:, None], y1[:, None], x0[None, :], x1[None, :]
    top = (1 - wx) * luts[y0, x0, img] + wx * luts[y0, x1, img]
    bottom = (1 - wx) * luts[y1, x0, img] + wx * luts[y1, x1, img]
    return np.clip((1 - wy) * top + wy * bottom + 0.5, 0, 255).astype(np.uint8)
