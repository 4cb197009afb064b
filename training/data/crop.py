"""The central crop: which part of an original image a model with a given `crop` sees.

Decoding (training.data.preprocess) cuts this box before resizing, and the heatmap overlay
(training.explain.overlay) puts a map back over the same box, so the two share this one
function. Nothing here imports torch: the CLI draws overlays without loading it.
"""

from __future__ import annotations

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive


def central_box(wh: tuple[int, int], fraction: float) -> Box:
    """The (left, top, right, bottom) box keeping the central `fraction` of each side.

    Python's round (half to even) sets the margins, so a box drawn later on the original image
    lands on exactly the pixels the model was given."""
    w, h = wh
    dx, dy = round(w * (1 - fraction) / 2), round(h * (1 - fraction) / 2)
    return dx, dy, w - dx, h - dy
