"""Images for a page, as data URIs: small JPEG thumbnails, and a larger view with the stored
heatmap blended on (training.explain.overlay) where one exists."""

from __future__ import annotations

import base64
import io
import os

from PIL import Image

THUMB = 96  # px, longest side: ~2-3 KB a thumbnail, so 10,000 images stay under ~30 MB
LARGE = 384  # px, longest side of the view an image opens to


def _data_uri(img: Image.Image, quality: int) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _small(path: str | os.PathLike, size: int) -> Image.Image:
    from training.data.dicom import open_image
    from training.explain.overlay import open_rgb  # 16-bit files scaled as the model saw them

    with open_image(path, size) as img:
        img.draft("RGB", (size, size))  # JPEG decodes at 1/2, 1/4 or 1/8 scale: much faster
        if img.mode in ("L", "RGB"):
            img.thumbnail((size, size))
            return img.copy()
    img = open_rgb(path)
    img.thumbnail((size, size))
    return img


def thumbnail(path: str | os.PathLike, size: int = THUMB) -> str | None:
    """A data URI of the image at `size` px, or None when it cannot be read any more."""
    try:
        return _data_uri(_small(path, size), 60)
    except Exception:  # the page still shows the row, with no picture
        return None


def overlay(path: str | os.PathLike, heatmap: object, size: int = LARGE) -> str | None:
    """The image with its stored heatmap (a db.schema.Heatmap row) and hottest box, at `size`
    px; None when it cannot be drawn."""
    from training.explain.grid import decode_grid
    from training.explain.overlay import render_overlay

    try:
        grid = decode_grid(heatmap.grid, heatmap.height, heatmap.width)
        buf = io.BytesIO()
        render_overlay(path, grid, heatmap.height, heatmap.width, heatmap.crop, buf)
        buf.seek(0)
        with Image.open(buf) as img:
            img.thumbnail((size, size))
            return _data_uri(img, 80)
    except Exception:
        return None
