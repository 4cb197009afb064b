"""The heatmap codec, the crop box and the overlay drawing load no torch: `cxrq report heatmap`
and the HTML report draw overlays in a process that never pays torch's start-up."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TORCH_FREE = (
    "training.data.bitdepth",
    "training.data.crop",
    "training.explain.grid",
    "training.explain.overlay",
)
# Draws an 8-bit and a 16-bit overlay, so the high-bit scaling is covered as well as the import.
PROBE = """
import importlib, sys
import numpy as np
from PIL import Image
for name in sys.argv[2:]:
    importlib.import_module(name)
from training.explain.grid import decode_grid, encode_grid
from training.explain.overlay import render_overlay
grid = decode_grid(encode_grid(np.eye(4, dtype=np.float32)), 4, 4)
for bits, dtype in ((8, np.uint8), (16, np.uint16)):
    src = f"{sys.argv[1]}/x{bits}.png"
    Image.fromarray(np.full((40, 60), 2 ** bits - 1, dtype=dtype)).save(src)
    assert render_overlay(src, grid, 4, 4, 0.9, f"{sys.argv[1]}/o{bits}.png") is not None
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_the_overlay_modules_import_and_draw_without_torch(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), *TORCH_FREE],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o16.png").exists()
