"""How a heatmap grid is stored: float16 cells, row-major, little-endian (2 bytes a cell).

    from training.explain.grid import decode_grid, encode_grid
    blob = encode_grid(maps[0])          # a (h, w) tensor or array -> bytes for the database
    grid = decode_grid(blob, h, w)       # -> a (h, w) float32 numpy array

Scoring writes grids and the CLI reads them back to draw overlays, so this one codec is numpy
only: a torch tensor is accepted without this module importing torch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def encode_grid(map2d: npt.ArrayLike) -> bytes:
    """A (h, w) map (a torch tensor or anything numpy reads) as float16, row-major,
    little-endian bytes (2 bytes a cell)."""
    if hasattr(map2d, "detach"):
        # A tensor may carry autograd, live on a GPU or be bfloat16, none of which numpy reads.
        map2d = map2d.detach().cpu().float()
    # Through float32 on the way to float16, as torch's own cast goes: float64 straight to
    # float16 can round a value differently, and the stored bytes must not change.
    values = np.asarray(map2d, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"expected a (h, w) map, got shape {values.shape}")
    with np.errstate(over="ignore"):  # past float16's range is inf, as torch casts it, silently
        return values.astype("<f2").tobytes(order="C")


def decode_grid(data: bytes, height: int, width: int) -> np.ndarray:
    """encode_grid's bytes back to a (height, width) float32 array (exact for float16 values).

    The byte order is explicit, so a big-endian host reads the same values."""
    if height < 1 or width < 1:
        raise ValueError(f"heatmap grid size must be positive, got {height} x {width}")
    expected = 2 * height * width
    if len(data) != expected:
        raise ValueError(
            f"{len(data)} bytes do not hold a {height}x{width} float16 grid, which needs "
            f"{expected} bytes"
        )
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(height, width)
