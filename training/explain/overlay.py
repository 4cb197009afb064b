"""Turning a stored heatmap grid into pixels of the original X-ray.

A heatmap is a small h x w grid (2..16 a side) covering exactly what the model saw: the central
`crop` region of the original image, squashed to a square. This module puts it back in place at
the image's own resolution:

    grid = decode_grid(row.grid_bytes, row.height, row.width)      # training.explain.grid
    box = hottest_box(grid, h, w, image_size(path), crop)           # (left, top, right, bottom)
    box = render_overlay(path, grid, h, w, crop, "overlay.png")     # the same box, drawn

Only PIL and numpy are imported here, with the torch-free training.data modules: the CLI draws
overlays without loading torch (tests/training/explain/test_torch_free.py).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, UnidentifiedImageError

from training.data.bitdepth import to_8bit
from training.data.crop import Box, central_box
from training.data.dicom import DicomError, first_line, open_image

# The hottest region is found on a working grid of about this many pixels a side, not on the
# full-resolution upsampled map: a 6-megapixel X-ray would otherwise need a flood fill over
# millions of pixels for a box that only has to be as precise as the grid's few cells.
WORK_SIDE = 128
# A pixel belongs to the hottest region from this fraction of the map's maximum, and only if it
# is also among the hottest HOT_AREA of the region's pixels: a diffuse map (a whole lung field
# above half its peak) would otherwise box the whole image. 10% is also what the deletion check
# (training.explain.faithfulness.deletion_drop) removes.
HOT_FRACTION = 0.5
HOT_AREA = 0.10
# An overlay is drawn at full resolution in RGB: refuse files that would need gigabytes.
MAX_OVERLAY_PIXELS = 64_000_000

BOX_COLOUR = (0, 255, 255)  # cyan: absent from the colormap below, so the box never blends in
CROP_OUTLINE = (255, 255, 255, 110)  # faint white, blended over whatever lies under it

# Anchors of an inferno-like ramp (black -> purple -> red -> orange -> pale yellow): perceptually
# ordered and readable in grayscale print, unlike a rainbow.
_ANCHORS = (
    (0, 0, 4),
    (28, 12, 68),
    (75, 12, 107),
    (120, 28, 109),
    (165, 44, 96),
    (207, 68, 70),
    (237, 105, 37),
    (251, 155, 6),
    (247, 209, 61),
    (252, 255, 164),
)


class HeatmapImageError(ValueError):
    """An image the overlay cannot be drawn on, or a file it cannot write."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def crop_region(image_size: tuple[int, int], crop: float = 1.0) -> Box:
    """The (left, top, right, bottom) part of the original image a model with this `crop` saw:
    training.data.crop.central_box, with a crop outside (0, 1] refused rather than drawn."""
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    return central_box(image_size, crop)


def hottest_box(
    grid: npt.ArrayLike,
    height: int,
    width: int,
    image_size: tuple[int, int],
    crop: float = 1.0,
) -> Box | None:
    """The box around the hottest region, in the original image's pixels (right/bottom
    exclusive), or None when nothing is hot.

    Definition: the grid is upsampled bilinearly (cell centres at half-cell offsets, as a model's
    own align_corners=False upsampling) over the crop region; the upsampled map is divided by
    its maximum; the hottest region is the 4-connected set of pixels that are >= 0.5 of the
    maximum and among the hottest 10% of the region's pixels, and that contains the maximum (the
    first in row-major order if several tie); the box is its bounding box offset by the crop
    region's left/top. The upsampling is done on a working grid of a whole
    number of pixels per cell (about 128 a side, or the region's own size where that is
    smaller), so cell borders fall on working pixels and a single hot cell's box is that cell;
    the box is then scaled to the region by pixel centres, within one working pixel of the
    full-resolution answer.

    A grid whose maximum is not above zero (all zero, or all negative) has no hot region: None,
    rather than a box around everything, which would point at a finding that is not there."""
    values = _checked_grid(grid, height, width)
    peak = float(values.max())
    if peak <= 0.0:
        return None
    left, top, right, bottom = crop_region(image_size, crop)
    region_w, region_h = right - left, bottom - top
    if region_w < 1 or region_h < 1:
        return None
    work_w, work_h = _work_size(height, width, region_w, region_h)
    heat = _upsample(values / peak, (work_w, work_h))
    seed = np.unravel_index(int(np.argmax(heat)), heat.shape)
    cut = max(HOT_FRACTION * float(heat[seed]), float(np.quantile(heat, 1.0 - HOT_AREA)))
    ys, xs = _component(heat >= cut, (int(seed[0]), int(seed[1])))
    x0, x1 = _to_region(min(xs), max(xs) + 1, work_w, region_w)
    y0, y1 = _to_region(min(ys), max(ys) + 1, work_h, region_h)
    return left + x0, top + y0, left + x1, top + y1


def render_overlay(
    image_path: str | os.PathLike,
    grid: npt.ArrayLike,
    height: int,
    width: int,
    crop: float,
    out_path: str | os.PathLike,
    alpha: float = 0.45,
) -> Box | None:
    """Save `out_path` as a PNG of the original X-ray at its own resolution with the heatmap
    blended over the crop region and the hottest region boxed; returns that box (None when
    the grid has no hot region, and no box is drawn).

    Each pixel's heat opacity is `alpha` x its normalised value, so cold areas show the X-ray
    unchanged. When crop < 1 the crop region is outlined faintly: what the model saw."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    values = _checked_grid(grid, height, width)
    img = open_rgb(image_path)
    region = crop_region(img.size, crop)
    box = hottest_box(values, height, width, img.size, crop)
    _blend_heat(img, values, region, alpha)
    draw = ImageDraw.Draw(img, "RGBA")  # RGBA so the crop outline's alpha blends
    line = max(2, round(img.width / 250))
    if crop < 1.0:
        draw.rectangle(_inclusive(region), outline=CROP_OUTLINE, width=max(1, line // 2))
    if box is not None:
        draw.rectangle(_inclusive(box), outline=BOX_COLOUR, width=line)
    try:
        img.save(out_path, format="PNG")
    except OSError as exc:
        raise HeatmapImageError(f"cannot write {os.fspath(out_path)}: {first_line(exc)}") from None
    return box


def colormap() -> np.ndarray:
    """The (256, 3) uint8 lookup table: heat 0..255 -> RGB, linear between the anchors."""
    anchors = np.asarray(_ANCHORS, dtype=np.float64)
    at = np.linspace(0.0, 255.0, len(anchors))
    levels = np.arange(256, dtype=np.float64)
    channels = [np.interp(levels, at, anchors[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8)


def _checked_grid(grid: npt.ArrayLike, height: int, width: int) -> np.ndarray:
    """The grid (row-major values, or an (h, w) array) as an (height, width) float32 array;
    non-finite cells count as cold."""
    if height < 1 or width < 1:
        raise ValueError(f"heatmap grid size must be positive, got {height} x {width}")
    values = np.asarray(grid, dtype=np.float32)
    if values.size != height * width:
        raise ValueError(f"heatmap grid of {height} x {width} needs {height * width} values")
    return np.nan_to_num(values.reshape(height, width), nan=0.0, posinf=0.0, neginf=0.0)


def _work_size(height: int, width: int, region_w: int, region_h: int) -> tuple[int, int]:
    """Working grid size: a whole number of pixels per cell, capped by the region itself."""
    per_cell = max(1, WORK_SIDE // max(height, width))
    return min(region_w, width * per_cell), min(region_h, height * per_cell)


def _upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (align_corners=False, edges clamped) of a 2-D grid to (w, h)."""
    h, w = values.shape
    small = Image.frombytes("F", (w, h), np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return np.asarray(small.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _component(mask: np.ndarray, seed: tuple[int, int]) -> tuple[list[int], list[int]]:
    """Rows and columns of the 4-connected pixels of `mask` reachable from `seed`."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    seen[seed] = True
    queue = deque([seed])
    ys, xs = [], []
    while queue:
        y, x = queue.popleft()
        ys.append(y)
        xs.append(x)
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                queue.append((ny, nx))
    return ys, xs


def _to_region(start: int, stop: int, work: int, region: int) -> tuple[int, int]:
    """Working pixels [start, stop) -> region pixels whose centres fall inside them.

    Region pixel i's centre, i + 0.5, lies at (i + 0.5) * work / region working pixels; it is
    inside when start <= that < stop, i.e. i >= start * region / work - 0.5. Integer
    arithmetic, so a cell border that falls on a pixel edge lands exactly on it."""
    first = -((work - 2 * start * region) // (2 * work))  # ceil((2*start*region - work) / 2work)
    end = -((work - 2 * stop * region) // (2 * work))
    first = min(max(first, 0), region - 1)
    return first, min(max(end, first + 1), region)


def image_size(image_path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the original, read from its header; errors as `render_overlay`'s."""
    with _opened(image_path) as img:
        return img.size


def open_rgb(image_path: str | os.PathLike) -> Image.Image:
    """The original as RGB at its own size; high-bit images scaled to 8 bits like the model's
    input. No EXIF rotation: the model saw the pixels as stored, so the heatmap is in them."""
    with _opened(image_path) as img:
        w, h = img.size
        if w * h > MAX_OVERLAY_PIXELS:
            raise HeatmapImageError(
                f"image too large for an overlay: {w} x {h} pixels, limit {MAX_OVERLAY_PIXELS:,}"
            )
        if img.mode in ("I", "F") or img.mode.startswith("I;"):
            return to_8bit(img).convert("RGB")
        return img.convert("RGB")


@contextmanager
def _opened(image_path: str | os.PathLike) -> Iterator[Image.Image]:
    """The image, open; a file that cannot be read or decoded is one HeatmapImageError line."""
    try:
        with open_image(image_path) as img:
            yield img
    except DicomError as exc:
        raise HeatmapImageError(f"cannot decode image {os.fspath(image_path)}: {exc}") from None
    except FileNotFoundError:
        raise HeatmapImageError(f"image not found: {os.fspath(image_path)}") from None
    except UnidentifiedImageError:
        raise HeatmapImageError(
            f"not an image file PIL can read: {os.fspath(image_path)}"
        ) from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise HeatmapImageError(
            f"cannot decode image {os.fspath(image_path)}: {first_line(exc)}"
        ) from None


def _blend_heat(img: Image.Image, values: np.ndarray, region: Box, alpha: float) -> None:
    """Blend the coloured heatmap onto `region` of `img` in place, opacity alpha x heat."""
    left, top, right, bottom = region
    if right <= left or bottom <= top:
        return
    peak = float(values.max())
    if peak <= 0.0:
        return  # nothing hot: every pixel's opacity is zero
    heat = _upsample(np.clip(values / peak, 0.0, 1.0), (right - left, bottom - top))
    level = np.rint(np.clip(heat, 0.0, 1.0) * 255.0).astype(np.uint8)
    colours = Image.fromarray(colormap()[level], "RGB")
    opacity = Image.fromarray(np.rint(level * np.float32(alpha)).astype(np.uint8), "L")
    # composite works in C, tile by tile: a 6-megapixel blend needs no float RGB copies.
    under = img.crop(region)
    img.paste(Image.composite(colours, under, opacity), (left, top))


def _inclusive(box: Box) -> tuple[int, int, int, int]:
    """PIL's rectangle takes the last pixel inclusive; ours are exclusive."""
    left, top, right, bottom = box
    return left, top, max(left, right - 1), max(top, bottom - 1)
