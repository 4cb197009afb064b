"""High-bit grayscale images (16-bit PNGs, 32-bit and float TIFFs) brought to 8 bits.

Decoding (training.data.preprocess) and the heatmap overlay (training.explain.overlay) scale
such images alike, so the overlay shows the pixels the model saw. Only numpy and PIL are
imported here: drawing an overlay of a 16-bit file must not load torch.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float grayscale image as "L", scaled by its bit depth.

    The depth is not stored in the file (a 12-bit detector's PNG is a 16-bit PNG), so it is
    taken from the brightest pixel: the smallest of 8, 10, 12, 14, 16, ... bits that holds it.
    A 16-bit copy of an 8-bit image (values x 257) so maps back to the 8-bit values when its
    brightest pixel is at least 64 (any X-ray's is), and a 12-bit image fills 0-255 instead of
    saturating to white as PIL's own conversion does. Floats up to 1.0 are taken as 0-1;
    negative and non-finite values are black."""
    pixels = np.array(img, dtype=np.float32)  # float32: exact for 16 bits, half of float64
    np.nan_to_num(pixels, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(pixels, 0.0, None, out=pixels)
    top = float(pixels.max(initial=0.0))
    if img.mode == "F" and top <= 1.0:
        full_scale = 1.0
    else:
        bits = max(8, math.ceil(top).bit_length())
        full_scale = float(2 ** (bits + bits % 2) - 1)
    pixels *= 255.0 / full_scale
    return Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8))
