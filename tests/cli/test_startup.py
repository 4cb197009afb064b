"""Start-up cost stays out: scoring never imports torchvision or torch._dynamo (together ~1.7 s
of every command before they were avoided)."""

import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import add_model_row, make_xray
from training.data.preprocess import Normalizer
from training.models.checkpoint import ModelBundle, to_bytes
from training.models.registry import create_model

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from cli.main import cli
try:
    cli(["score", sys.argv[1], "--model", "1"])
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(m for m in ("torch._dynamo", "torchvision") if m in sys.modules))
"""


def test_scoring_imports_neither_torchvision_nor_dynamo(db_url: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    bundle = ModelBundle(
        create_model("googlenet", 32).eval(), "googlenet", 32, Normalizer(), 0.5, {}
    )
    add_model_row(to_bytes(bundle), "g", "googlenet")
    for i in range(3):
        make_xray(tmp_path / "xrays" / f"{i}.jpeg", i % 2 == 0, i)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "xrays")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "3 images: 3 scored" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
