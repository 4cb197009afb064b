"""Real X-rays through the real CLI: every arch trains, every image gets one row."""

import json
from pathlib import Path

import pytest

from tests.helpers import run
from training.models.registry import list_models

pytestmark = pytest.mark.slow


def _slice(shared_data: Path, tmp_path: Path, per_class: int = 20) -> Path:
    """A small dataset of links into the real training split (data is never copied)."""
    root = tmp_path / "slice"
    for label in ("NORMAL", "PNEUMONIA"):
        (root / "train" / label).mkdir(parents=True)
        for src in sorted((shared_data / "chest_xray" / "train" / label).iterdir())[:per_class]:
            (root / "train" / label / src.name).symlink_to(src)
    return root


@pytest.mark.parametrize("arch", list_models())
def test_every_arch_trains_and_scores_a_folder(arch, db_url, shared_data, tmp_path) -> None:
    data = _slice(shared_data, tmp_path)
    run("train", "--arch", arch, "--data", data, "--epochs", 1, "--batch-size", 16)
    out = run("score", data / "train", "--model", arch, "--chunk-size", 16)
    assert "40 images: 40 scored, 0 unreadable" in out
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    assert len(rows) == len({r["path"] for r in rows}) == 40
    assert all(0.0 <= r["prob_pneumonia"] <= 1.0 for r in rows)


def test_fullres_folder_gives_150_labelled_rows_and_scores(db_url, shared_data, tmp_path):
    run("train", "--arch", "cnn", "--data", _slice(shared_data, tmp_path), "--epochs", 1)
    run("score", shared_data / "fullres")
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    labels = [r["true_label"] for r in rows]
    assert (len(rows), labels.count("NORMAL"), labels.count("PNEUMONIA")) == (150, 60, 90)
    assert all(r["error"] is None for r in rows)
    job = json.loads(run("report", "job", "latest", "--format", "json"))[0]
    assert job["state"] == "succeeded" and job["evaluations"][0]["n"] == 150
