"""The answers stay: two seeded tiny models (one with a kind head, one without), stored as fixed
rows in tests/golden, score a fixed folder of PNGs and DICOMs alone and as an ensemble, with
heatmaps; every row (P, P(viral), kind, threshold, review scores and verdicts, heatmap grids,
DICOM identities), the models' thresholds and the jobs' scores must match
tests/golden/scoring.json.

It guards the scoring path, not training: training runs bfloat16 autocast where the CPU has it,
so its weights differ from one CPU's kernels to another's. The models are trained (through the
CLI, on a fixed generated folder) only when the golden files are written; every other run
inserts their rows as stored: models.json holds every column but id, created_at, job_id and the
weights, which are the exact `Model.weights` bytes in <name>.cxrqm (and data.root, the training
folder, which is regenerated each run: creating the ensemble scores it on the members'
validation split). Scoring from fixed weights differs between CPUs only by float rounding,
which TOLERANCES allows; labels, kinds, review reasons and verdicts, errors, identities and
thresholds must match exactly.

    CXRQ_WRITE_GOLDEN=1 pytest tests/test_golden.py   # retrain, rewrite all four files (only
                                                      # for a change of answers or models)
"""

from __future__ import annotations

import hashlib
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
from db.session import dispose_engines, session_scope
from tests.conftest import make_xray
from tests.helpers import run
from training.data.data_files import find_splits, fingerprint
from training.data.dicom_write import DicomSpec, write_dicom

GOLDEN = Path(__file__).parent / "golden"
ANSWERS = GOLDEN / "scoring.json"
MODELS = GOLDEN / "models.json"
NOT_STORED = ("id", "created_at", "job_id", "weights")  # the weights go to <name>.cxrqm
TRAINING_ROOT = "<_training_set>"  # data.root in models.json: the test's folder, not the writer's

# What float rounding may move when the same weights score on another CPU (other SIMD kernels
# and thread counts sum in other orders). Measured against the file as written (AVX-512, two
# threads), the largest differences were: one thread, only OOD/anomaly/review scores, 7e-7
# relative; ATen AVX2 and oneDNN AVX2 kernels, none; ATen's scalar kernels with oneDNN capped
# at SSE4.1 (further from any CI CPU than another vendor's AVX-512), P and P(viral) 6e-8,
# confidence (Platt-scaled, ~30x the logit's error) 1e-6, OOD score 9e-6 relative, anomaly and
# review scores 9e-5 relative (Mahalanobis distances: the residual off the top principal
# directions cancels digits). So: absolute 1e-5 on probabilities, relative 5e-4 on the
# distance-based scores (~10x and ~5x those), still far below what any change of weights,
# preprocessing or calibration moves (retraining on another CPU moved P by 1e-3 and an anomaly
# score by 0.8). No heatmap value moved; the grids are float16, where a value at a rounding
# boundary flips by an ulp (2^-11 below 1), so two are allowed. The closest call is 3e-5
# between a P(viral) and its kind threshold, ~500x the largest drift of P(viral) seen.
TOLERANCES = {
    "prob": 1e-5,
    "prob_viral": 1e-5,
    "confidence": 1e-5,
    "disagreement": 1e-5,
    "grid": 2 * 2.0**-11,
}
REL = {"ood_score": 5e-4, "anomaly_score": 5e-4, "review_score": 5e-4}
EXACT = 1e-12  # everything else: thresholds, scores of counts, crops


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


def _write_models(data: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train the two models on the training set through the CLI, in a database of their own,
    and write their rows to tests/golden (ids 1 and 2 there, as `_add_models` gives them)."""
    monkeypatch.setenv("CXRQ_DATABASE_URL", f"sqlite:///{data.parent / 'train.db'}")
    dispose_engines()
    common = ("--data", data, "--epochs", 2, "--img-size", 32, "--seed", 3)
    run("train", "--arch", "cnn", "--name", "plain", "--kind-head", "none", *common)
    run(
        "train", "--arch", "cnn", "--name", "kinds", "--kind-head", "two", "--init-seed", 1, *common
    )
    with session_scope() as s:
        models = list(s.scalars(select(Model).order_by(Model.id)))
        assert [m.id for m in models] == [1, 2]
        rows = []
        for m in models:
            (GOLDEN / f"{m.name}.cxrqm").write_bytes(m.weights)
            columns = (c.name for c in Model.__table__.columns if c.name not in NOT_STORED)
            row = {c: getattr(m, c) for c in columns}
            assert row["data"]["root"] == str(data.resolve())
            rows.append(row | {"data": row["data"] | {"root": TRAINING_ROOT}})
    MODELS.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    dispose_engines()
    monkeypatch.setenv("CXRQ_DATABASE_URL", db_url)


def _add_models(data: Path) -> None:
    """The stored model rows in the test's database, with the ids the CLI gave them and the
    training set (regenerated at `data`: creating an ensemble scores it on the members'
    validation split) where they were trained."""
    train_items = find_splits(data)["train"]
    with session_scope() as s:
        for model_id, row in enumerate(json.loads(MODELS.read_text()), start=1):
            weights = (GOLDEN / f"{row['name']}.cxrqm").read_bytes()
            assert hashlib.sha256(weights).hexdigest() == row["weights_sha256"], row["name"]
            assert row["data"]["fingerprint"] == fingerprint(train_items), "another training set"
            row["data"]["root"] = str(data.resolve())
            s.add(Model(**row, id=model_id, weights=weights))


def _number(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


PREDICTION_FIELDS = (
    "prob", "label", "true_label", "error", "prob_viral", "kind", "ood_score", "anomaly_score",
    "confidence", "disagreement", "review_score", "review", "review_reasons", "patient_hash",
    "threshold", "site_profile_id",
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


def _close(got: Any, want: Any, where: str, field: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _close(got[k], want[k], f"{where}.{k}", k)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]", field)
    elif isinstance(want, float) and not isinstance(got, bool):
        allowed = TOLERANCES.get(field, EXACT) + REL.get(field, 0.0) * abs(want)
        assert got is not None and abs(got - want) <= allowed, f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.slow
def test_the_answers_match_the_golden_file(db_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXRQ_PATIENT_SALT", "golden-salt")
    data = _training_set(tmp_path / "data")
    if os.environ.get("CXRQ_WRITE_GOLDEN"):
        _write_models(data, db_url, monkeypatch)
    _add_models(data)
    folder = _scored_folder(tmp_path / "scored")
    run("score", folder, "--model", "plain", "--explain", "all", "--chunk-size", 5)
    run("score", folder, "--model", "kinds", "--explain", "pneumonia")
    run("ensemble", "create", "pair", "--member", "plain=1", "--member", "kinds=1")
    run("score", folder, "--model", "pair", "--explain", "all", "--chunk-size", 7)
    answers = _answers(folder)
    if os.environ.get("CXRQ_WRITE_GOLDEN"):
        ANSWERS.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    _close(answers, json.loads(ANSWERS.read_text()), "answers")
