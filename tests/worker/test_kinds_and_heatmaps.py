"""What kind and where: kind columns on rows and evaluations, heatmaps stored and drawn,
for single models and ensembles (embedded; the queued path is in test_queue)."""

import json
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from db.schema import Evaluation, Heatmap, Prediction
from db.session import session_scope
from tests.conftest import kinds_dataset, make_xray
from tests.helpers import job_id_of, run
from training.explain.grid import decode_grid


@pytest.fixture()
def kind_model(db_url, tmp_path: Path) -> Path:
    """Model 1, "k": a cnn with the default preset's kind head, trained on named bacterial and
    viral images; returns their folder."""
    data = kinds_dataset(tmp_path / "data")
    run("train", "--arch", "cnn", "--data", data, "--epochs", 2, "--img-size", 32, "--name", "k")
    return data


def _scan(root: Path) -> Path:
    for i in range(3):
        make_xray(root / "NORMAL" / f"IM-{70 + i:04d}-0001.jpeg", False, 700 + i, size=60)
        make_xray(root / "PNEUMONIA" / f"person{80 + i}_virus_{i}.jpeg", True, 800 + i, size=60)
        make_xray(root / "PNEUMONIA" / f"person{90 + i}_bacteria_{i}.jpeg", True, 900 + i)
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"not an image")
    return root


def test_rows_carry_p_viral_and_the_kind_of_pneumonia_calls(kind_model, tmp_path) -> None:
    job_id = job_id_of(run("score", _scan(tmp_path / "scan"), "--model", "k"))
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        evaluation = s.scalars(select(Evaluation).where(Evaluation.job_id == job_id)).one()
        maps = s.scalars(select(Heatmap).where(Heatmap.job_id == job_id)).all()
    ok = [r for r in rows if r.error is None]
    assert len(ok) == 9 and all(0 <= r.prob_viral <= 1 for r in ok)
    assert all((r.kind in ("BACTERIAL", "VIRAL")) == (r.label == "PNEUMONIA") for r in ok)
    assert [r.prob_viral for r in rows if r.error] == [None]
    assert evaluation.kind_n == 6 and 0 <= evaluation.kind_accuracy <= 1  # the named pneumonias
    # By default, maps for the images called PNEUMONIA (and only them).
    called = {r.path for r in ok if r.label == "PNEUMONIA"}
    assert {m.path for m in maps} == called
    csv_rows = run("report", "predictions", job_id, "--format", "csv").splitlines()
    assert "prob_viral" in csv_rows[0] and "kind" in csv_rows[0].split(",")
    table = run("report", "predictions", job_id)
    assert "prob_viral" in table and ("VIRAL" in table or "BACTERIAL" in table)
    models = json.loads(run("report", "models", "--format", "json"))
    assert models[0]["val_kind_n"] is not None and "kind_accuracy" in models[0]["evaluations"][0]
    assert "kind_roc_auc" in run("report", "models")


def test_explain_stores_a_map_per_image_and_draws_it_at_the_original_size(
    kind_model, tmp_path
) -> None:
    scan = _scan(tmp_path / "scan")
    job_id = job_id_of(run("score", scan, "--model", "k", "--explain"))
    with session_scope() as s:
        maps = s.scalars(select(Heatmap).where(Heatmap.job_id == job_id)).all()
    assert len(maps) == 9 and {m.scorer for m in maps} == {"model:1"}
    grid = decode_grid(maps[0].grid, maps[0].height, maps[0].width)
    assert grid.shape == (maps[0].height, maps[0].width) and float(grid.min()) >= 0
    assert float(grid.max()) == pytest.approx(1.0, abs=1e-3) or float(grid.max()) == 0.0

    name = "person80_virus_0.jpeg"
    report = json.loads(run("report", "heatmap", job_id, name, "--format", "json"))[0]
    left, top, right, bottom = report["box"]
    assert 0 <= left < right <= 60 and 0 <= top < bottom <= 60  # the 60 px original's pixels
    assert report["path"].endswith(name) and report["method"] == "grad-cam body.2"
    out = tmp_path / "overlay.png"
    run("report", "heatmap", job_id, str(scan / "PNEUMONIA" / name), "-o", out)
    with Image.open(out) as img:
        assert img.size == (60, 60) and img.format == "PNG"


def test_heatmap_report_errors_are_one_line(kind_model, tmp_path) -> None:
    job_id = job_id_of(run("score", _scan(tmp_path / "scan"), "--model", "k", "--explain", "none"))
    assert "--explain" in run("report", "heatmap", job_id, "x.jpeg", ok=False)
    job_id = job_id_of(run("score", _scan(tmp_path / "scan"), "--model", "k", "--explain"))
    assert "no heatmap" in run("report", "heatmap", job_id, "nothing.jpeg", ok=False)


def test_an_ensemble_combines_members_kind_and_maps(kind_model, tmp_path) -> None:
    run("train", "--arch", "mlp", "--data", kind_model, "--epochs", 1, "--img-size", 32, "--preset",
        "seed", "--name", "binary", "--crop", 0.85)  # fmt: skip  # k's crop: maps overlay
    run("ensemble", "create", "mix", "--member", "k=0.7", "--member", "binary=0.3")
    job_id = job_id_of(run("score", _scan(tmp_path / "scan"), "--model", "mix", "--explain"))
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        maps = s.scalars(select(Heatmap).where(Heatmap.job_id == job_id)).all()
    by = {(r.scorer, Path(r.path).name): r for r in rows}
    for (scorer, name), row in by.items():
        if scorer.startswith("ensemble") and row.error is None:
            # the binary member answers no kind: the ensemble's P(viral) is its kind member's
            assert row.prob_viral == pytest.approx(by[("model:1", name)].prob_viral)
            assert by[("model:2", name)].prob_viral is None
    assert {m.scorer for m in maps} == {"model:1", "model:2", "ensemble:1"}
    assert {m.method for m in maps if m.scorer == "ensemble:1"} == {"weighted members"}
