"""The answers stay: two seeded tiny models (one with a kind head, one without), trained on
a fixed generated folder, score a fixed folder of PNGs and DICOMs alone and as an ensemble, with
heatmaps; every row (P, P(viral), kind, review scores and verdicts, heatmap grids, DICOM
identities), the models' thresholds and the jobs' scores must match tests/golden/scoring.json.

    CXRQ_WRITE_GOLDEN=1 pytest tests/test_golden.py   # rewrite it (only for a change of answers)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from db.schema import Evaluation, Heatmap, Model, Prediction
from db.session import session_scope
from tests.conftest import make_xray
from tests.helpers import run
from training.data.dicom_write import DicomSpec, write_dicom

GOLDEN = Path(__file__).parent / "golden" / "scoring.json"
TOLERANCE = 1e-6


def _training_set(root: Path) -> Path:
    for i in range(12):
        make_xray(root / "train" / "NORMAL" / f"IM-{i // 2:04d}-{i:04d}.jpeg", False, i)
        kind = "virus" if i % 3 == 0 else "bacteria"
        name = f"person{i // 2}_{kind}_{i}.jpeg"
        make_xray(root / "train" / "PNEUMONIA" / name, True, 1000 + i)
    return root


def _scored_folder(root: Path) -> Path:
    for i in range(6):
        make_xray(root / "NORMAL" / f"IM-9{i:03d}-0001.png", False, 500 + i, size=40)
        make_xray(root / "PNEUMONIA" / f"person9{i}_virus_1.png", True, 600 + i, size=56)
    for i, spec in enumerate((DicomSpec(bits=12), DicomSpec(monochrome1=True, patient_id=None))):
        src = make_xray(root / f"src{i}.png", bool(i), 700 + i)
        write_dicom(root / "PNEUMONIA" / f"film{i}.dcm", np.array(Image.open(src)), spec)
        src.unlink()
    (root / "NORMAL" / "broken.png").write_bytes(b"not an image")
    return root


def _number(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


PREDICTION_FIELDS = (
    "prob", "label", "true_label", "error", "prob_viral", "kind", "ood_score", "anomaly_score",
    "confidence", "disagreement", "review_score", "review", "review_reasons", "patient_hash",
)  # fmt: skip


def _prediction(r: Prediction, root: Path) -> dict[str, Any]:
    return {
        "job": r.job_id,
        "scorer": r.scorer,
        "path": Path(r.path).relative_to(root).as_posix(),
        **{c: _number(getattr(r, c)) for c in PREDICTION_FIELDS},
        "has_sop_uid": r.sop_instance_uid is not None,
    }


def _heatmap(m: Heatmap, root: Path) -> dict[str, Any]:
    return {
        "job": m.job_id,
        "scorer": m.scorer,
        "path": Path(m.path).relative_to(root).as_posix(),
        "shape": [m.height, m.width],
        "grid": np.frombuffer(m.grid, dtype=np.float16).astype(float).tolist(),
        "crop": m.crop,
        "method": m.method,
    }


def _answers(root: Path) -> dict[str, Any]:
    """Everything the database holds of the jobs' answers, paths relative to root."""
    with session_scope() as s:
        predictions = [_prediction(r, root) for r in s.scalars(select(Prediction))]
        maps = [_heatmap(m, root) for m in s.scalars(select(Heatmap))]
        models = [
            {"name": m.name, "threshold": m.threshold, "kind": m.data.get("kind_threshold")}
            for m in s.scalars(select(Model).order_by(Model.id))
        ]
        scores = [
            {"job": e.job_id, "split": e.split, "f1": e.f1, "auc": e.roc_auc, "n": e.n}
            for e in s.scalars(select(Evaluation).where(Evaluation.job_id.is_not(None)))
        ]
    key = lambda d: (d["job"], d["scorer"], d["path"])  # noqa: E731
    return {
        "predictions": sorted(predictions, key=key),
        "heatmaps": sorted(maps, key=key),
        "models": models,
        "scores": sorted(scores, key=lambda d: (d["job"], d["split"], d["n"])),
    }


def _close(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got is not None and abs(got - want) <= TOLERANCE, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.slow
def test_the_answers_match_the_golden_file(db_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXRQ_PATIENT_SALT", "golden-salt")
    data = _training_set(tmp_path / "data")
    common = ("--data", data, "--epochs", 2, "--img-size", 32, "--seed", 3)
    run("train", "--arch", "cnn", "--name", "plain", "--kind-head", "none", *common)
    run(
        "train", "--arch", "cnn", "--name", "kinds", "--kind-head", "two", "--init-seed", 1, *common
    )
    folder = _scored_folder(tmp_path / "scored")
    run("score", folder, "--model", "plain", "--explain", "all", "--chunk-size", 5)
    run("score", folder, "--model", "kinds", "--explain", "pneumonia")
    run("ensemble", "create", "pair", "--member", "plain=1", "--member", "kinds=1")
    run("score", folder, "--model", "pair", "--explain", "all", "--chunk-size", 7)
    answers = _answers(folder)
    if os.environ.get("CXRQ_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    _close(answers, json.loads(GOLDEN.read_text()), "answers")
