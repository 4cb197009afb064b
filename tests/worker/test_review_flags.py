"""When not to trust a call, end to end (embedded): review columns on every row for single
models and ensembles, the job's flagged count, `report predictions --review`, and the
selective accuracy in `report job` (the queued path is in test_queue)."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import select

from db.schema import Model, Prediction
from db.session import session_scope
from tests.conftest import make_dataset, make_xray
from tests.helpers import run
from training.models.checkpoint import from_bytes


@pytest.fixture()
def reviewed_model(db_url, tmp_path: Path) -> Path:
    """Model 1: a cnn trained with a tuning split (the default preset), so its review
    statistics are calibrated there; returns its data folder."""
    data = make_dataset(tmp_path / "data", per_class=30, images_per_patient=1)
    run("train", "--arch", "cnn", "--data", data, "--epochs", 1, "--img-size", 32)
    return data


def _scan(root: Path) -> Path:
    """X-ray-like images of both classes, a colour picture and an unreadable file."""
    for i in range(4):
        make_xray(root / "NORMAL" / f"IM-{80 + i:04d}-0001.jpeg", False, 800 + i)
        make_xray(root / "PNEUMONIA" / f"person{80 + i}_bacteria_{i}.jpeg", True, 900 + i)
    gen = torch.Generator().manual_seed(0)
    colour = torch.randint(0, 255, (48, 48, 3), generator=gen, dtype=torch.uint8)
    colour[..., 0] = 255  # strongly red: nothing like a grey film
    Image.fromarray(colour.numpy()).save(root / "photo.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def _rows(job_id: int, scorer: str | None = None) -> list[Prediction]:
    with session_scope() as s:
        query = select(Prediction).where(Prediction.job_id == job_id)
        if scorer:
            query = query.where(Prediction.scorer == scorer)
        return list(s.scalars(query).all())


def test_statistics_are_stored_with_the_model(reviewed_model) -> None:
    with session_scope() as s:
        model = s.get(Model, 1)
        bundle = from_bytes(model.weights)
        lines = model.data["review"]
    assert bundle.review is not None and bundle.review.calibrated_on == "tuning split"
    assert lines == bundle.review.header()  # the flag lines, readable without the weights
    assert set(bundle.review.centre) == {
        "features",
        "thumbnail",
        "layout",
        "orientation",
        "saturation",
        "detail",
    }


def test_rows_carry_scores_and_flags_and_reports_show_them(reviewed_model, tmp_path) -> None:
    out = run("score", _scan(tmp_path / "scan"), "--model", "cnn")
    job_id = int(out.split()[1].rstrip(":"))
    rows = {Path(r.path).name: r for r in _rows(job_id)}
    photo, broken = rows.pop("photo.png"), rows.pop("broken.png")
    assert photo.review and "not-cxr" in photo.review_reasons and photo.ood_score >= 1
    assert broken.error and broken.review is None and broken.confidence is None
    for r in rows.values():
        assert r.review is not None and 0 <= r.confidence <= 1 and r.disagreement is None
        assert r.review == (r.review_score >= 1) and (r.review_reasons is None) == (not r.review)
    flagged = [r for r in [photo, *rows.values()] if r.review]
    assert f"{len(flagged)} flagged for review (not-cxr " in out

    listed = json.loads(run("report", "predictions", job_id, "--review", "--format", "json"))
    assert [r["path"] for r in listed] == [
        r.path for r in sorted(flagged, key=lambda r: -r.review_score)
    ]
    assert listed[0]["review_reasons"] and "ood_score" in listed[0]
    table = run("report", "predictions", job_id, "--review")
    assert "photo.png" in table and "not-cxr" in table

    report = json.loads(run("report", "job", job_id, "--format", "json"))[0]["review"]
    labelled = [r for r in rows.values() if not r.review]
    assert report["scored"] == 9 and report["flagged"] == len(flagged)
    assert report["coverage"] == pytest.approx(1 - len(flagged) / 9)
    if labelled:
        right = sum(r.label == r.true_label for r in labelled) / len(labelled)
        assert report["accuracy_unflagged"] == pytest.approx(right)
    assert "coverage" in run("report", "job", job_id)


def test_ensemble_rows_carry_disagreement_and_members_keep_their_own(
    reviewed_model, tmp_path
) -> None:
    data = reviewed_model
    run("train", "--arch", "mlp", "--data", data, "--epochs", 1, "--img-size", 32)
    run("ensemble", "create", "duo", "--member", "cnn=1", "--member", "mlp=1")
    out = run("score", _scan(tmp_path / "scan"), "--model", "duo")
    job_id = int(out.split()[1].rstrip(":"))
    combined = [r for r in _rows(job_id) if r.ensemble_id is not None and r.error is None]
    members = [r for r in _rows(job_id) if r.model_id is not None and r.error is None]
    assert len(combined) == 9 and len(members) == 18
    assert all(0 <= r.disagreement <= 1 and r.review is not None for r in combined)
    assert all(r.disagreement is None and r.review is not None for r in members)
    photo = next(r for r in combined if r.path.endswith("photo.png"))
    assert "not-cxr" in photo.review_reasons
    # the ensemble's not-cxr is any member's
    member_ood = [r.ood_score for r in members if r.path.endswith("photo.png")]
    assert photo.ood_score == pytest.approx(max(member_ood))
    # --review lists the ensemble's own calls, not its members'
    listed = json.loads(run("report", "predictions", job_id, "--review", "--format", "json"))
    assert listed and all(r["ensemble_id"] is not None for r in listed)
