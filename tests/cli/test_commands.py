import csv
import io
import json
import os
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from db.migrate import head_revision
from db.schema import Evaluation, Job, Model, Prediction
from db.session import session_scope
from tests.conftest import make_xray
from tests.helpers import run


@pytest.fixture()
def trained(db_url: str, tiny_dataset: Path) -> int:
    out = run(
        "train",
        "--arch",
        "cnn",
        "--data",
        tiny_dataset,
        "--epochs",
        "1",
        "--img-size",
        "32",
        "--batch-size",
        "8",
        "--name",
        "tiny",
    )
    assert "validation: F1" in out
    with session_scope() as s:
        return s.scalars(select(Model.id)).one()


def test_train_stores_the_model_and_its_scores(trained: int) -> None:
    with session_scope() as s:
        model = s.get(Model, trained)
        assert (model.name, model.arch, model.img_size) == ("tiny", "cnn", 32)
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 1
    rows = json.loads(run("report", "models", "--format", "json"))
    assert rows[0]["id"] == trained and 0 <= rows[0]["val_f1"] <= 1
    assert {
        "val_precision",
        "val_sensitivity",
        "val_specificity",
        "val_roc_auc",
        "val_tp",
        "evaluations",
    } <= set(rows[0])


def test_score_then_report_predictions_in_every_format(trained: int, tmp_path: Path) -> None:
    folder = tmp_path / "xrays"
    for i in range(3):
        make_xray(folder / "NORMAL" / f"IM-{i:04d}-0001.jpeg", False, i)
        make_xray(folder / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", True, 9 + i)
    (folder / "PNEUMONIA" / "zero.jpeg").write_bytes(b"")
    out = run("score", folder, "--model", "tiny")
    assert "7 images: 6 scored, 1 unreadable" in out and "scores on labelled images" in out
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 7
        assert s.scalars(select(Job.state).where(Job.kind == "score")).one() == "succeeded"
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    assert len(rows) == 7 and sum(r["error"] is not None for r in rows) == 1
    table = list(
        csv.DictReader(io.StringIO(run("report", "predictions", "latest", "--format", "csv")))
    )
    assert len(table) == 7 and {r["true_label"] for r in table} == {"NORMAL", "PNEUMONIA"}
    assert "zero.jpeg" in run("report", "predictions", "latest")
    job = json.loads(run("report", "job", "latest", "--format", "json"))[0]
    assert (job["predictions"], job["errors"]) == (7, 1)
    assert job["evaluations"][0]["n"] == 6
    assert "score succeeded 7/7" in run("status", "latest")
    assert "score" in run("report", "jobs")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--arch", "vgg", "--data", "."), "unknown arch 'vgg'"),
        (("train", "--arch", "cnn", "--data", "/no/such/dir"), "does not exist"),
        (("train", "--arch", "cnn"), "pass --data DIR or set CXRQ_DATA"),
        (("train", "--arch", "cnn", "--threshold", "high"), "balanced or sensitivity"),
        (("train", "--arch", "cnn", "--threshold", "1.5"), "a number in (0, 1)"),
        (("train", "--arch", "cnn", "--max-per-class", "0"), "0 is not in the range x>=1"),
        (("score", ".", "--prevalence", "1"), "--prevalence"),
        (("score", "/no/such/dir"), "does not exist"),
        (("report", "job", "12345"), "no job 12345"),
        (("report", "predictions", "nope"), "not a job id"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(db_url, args, message) -> None:
    assert message in run(*args, ok=False)


def test_scoring_without_a_model_or_images_says_what_to_do(db_url, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "no .jpeg, .jpg or .png images" in run("score", tmp_path / "empty", ok=False)
    make_xray(tmp_path / "one" / "a.jpeg", False, 0)
    assert "train one with" in run("score", tmp_path / "one", ok=False)


def test_db_upgrade(db_url: str) -> None:
    assert f"is at schema {head_revision()}" in run("db", "upgrade")


def test_score_at_a_stated_prevalence_restates_p_and_decides_at_half(
    trained: int, tmp_path: Path
) -> None:
    from training.scoring.prevalence import prior_shift

    folder = tmp_path / "xrays"
    for i in range(4):
        make_xray(folder / "NORMAL" / f"IM-{i:04d}-0001.jpeg", False, i)
        make_xray(folder / "PNEUMONIA" / f"person{i}_virus_{i}.jpeg", True, 9 + i)
    run("score", folder, "--model", "tiny")
    plain = {
        r["path"]: r for r in json.loads(run("report", "predictions", "latest", "--format", "json"))
    }
    out = run("score", folder, "--model", "tiny", "--prevalence", "0.1")
    assert "at prevalence 0.1" in out
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    assert len(rows) == 8
    for row in rows:
        before = torch.tensor([plain[row["path"]]["prob_pneumonia"]], dtype=torch.float64)
        expected = prior_shift(before, 0.5, 0.1).item()  # the flip preset trains 50/50
        assert row["prob_pneumonia"] == pytest.approx(expected, abs=1e-9)
        assert row["label"] == ("PNEUMONIA" if row["prob_pneumonia"] >= 0.5 else "NORMAL")
    with session_scope() as s:
        latest = s.scalars(select(Evaluation).order_by(Evaluation.id.desc())).first()
        assert latest.threshold == 0.5


def test_prevalence_is_refused_for_ensembles(trained: int, tmp_path: Path) -> None:
    make_xray(tmp_path / "x" / "a.jpeg", False, 0)
    run("ensemble", "create", "pair", "--member", f"{trained}=1")
    out = run("score", tmp_path / "x", "--model", "pair", "--prevalence", "0.3", ok=False)
    assert "single models" in out


def test_report_models_shows_validation_and_test_side_by_side(db_url: str) -> None:
    from db.store import save_evaluation
    from tests.helpers import add_placeholder_model, evaluation_scores

    with session_scope() as s:
        tested = add_placeholder_model(s, "tested", "cnn", 0.9)
        save_evaluation(s, "test", "/data/test", evaluation_scores(0.6), model_id=tested)
        add_placeholder_model(s, "untested", "mlp", 0.8)
    header, _, with_test, without = run("report", "models").splitlines()[:4]
    val = ["val_f1", "val_sensitivity", "val_specificity", "val_accuracy", "val_roc_auc"]
    test = ["test_sensitivity", "test_specificity", "test_accuracy", "test_roc_auc"]
    assert header.split()[7:16] == val + test  # after id .. epochs and the aliases
    scores = ["0.8000", "0.7000", "0.7500", "-"]  # sensitivity .. AUC (NaN AUC stored as NULL)
    assert with_test.split()[6:16] == ["-", "0.9000", *scores, *scores]  # no alias: "-"
    assert without.split()[12:16] == ["-"] * 4
    rows = list(csv.DictReader(io.StringIO(run("report", "models", "--format", "csv"))))
    assert rows[0]["test_f1"] == "0.6" and rows[0]["test_tn"] == "7" and rows[1]["test_n"] == ""
    counts = {f"{p}_{k}" for p in ("val", "test") for k in ("precision", "fn", "threshold", "n")}
    assert counts <= set(rows[0])


def test_a_diverged_training_fails_its_job_and_stores_no_model(
    db_url: str, tiny_dataset: Path
) -> None:
    args = ("--arch", "cnn", "--data", tiny_dataset, "--epochs", "1", "--img-size", "32")
    out = run("train", *args, "--lr", "1e12", ok=False)
    error = out.strip().splitlines()[-1]
    assert error.startswith("Error: training diverged: ") and error.endswith("(now 1e+12)")
    with session_scope() as s:
        job = s.scalars(select(Job)).one()
        assert job.state == "failed" and "training diverged" in job.message
        assert "\n" not in job.message
        assert s.scalar(select(func.count()).select_from(Model)) == 0


def test_a_model_that_outputs_nan_gives_error_rows_not_normal(trained: int, tmp_path: Path) -> None:
    from training.models.checkpoint import from_bytes, sha256, to_bytes

    with session_scope() as s:  # the weights a diverged run would have stored
        model = s.get(Model, trained)
        bundle = from_bytes(model.weights)
        with torch.no_grad():
            for p in bundle.model.parameters():
                p.fill_(float("nan"))
        model.weights = to_bytes(bundle)
        model.weights_sha256 = sha256(model.weights)
    make_xray(tmp_path / "xrays" / "NORMAL" / "IM-0001-0001.jpeg", False, 0)
    make_xray(tmp_path / "xrays" / "PNEUMONIA" / "person1_virus_1.jpeg", True, 1)
    out = run("score", tmp_path / "xrays", "--model", "tiny")
    assert "partial: 2 images: 0 scored, 0 unreadable; threshold" in out
    assert "; 2 with a model output that is not a number" in out
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    assert [(r["label"], r["prob_pneumonia"], r["error"]) for r in rows] == [
        (None, None, "model output is not a number")
    ] * 2


def test_an_unreadable_folder_is_an_error_row_and_a_partial_job(
    trained: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        make_xray(tmp_path / "xrays" / "NORMAL" / f"n{i}.jpeg", False, i)
        make_xray(tmp_path / "xrays" / "PNEUMONIA" / f"p{i}.jpeg", True, i)
    locked, real_scandir = tmp_path / "xrays" / "PNEUMONIA", os.scandir

    def scandir(path: str = ".") -> object:  # as root a chmod 000 folder is readable anyway
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = run("score", tmp_path / "xrays", "--model", "tiny")
    assert f"warning: cannot read folder {locked} (Permission denied)" in out
    assert "partial: 3 images: 3 scored, 0 unreadable" in out
    assert "1 folder(s) could not be read" in out
    rows = json.loads(run("report", "predictions", "latest", "--format", "json"))
    assert [r["error"] for r in rows if r["error"]] == ["folder not readable: Permission denied"]
    assert "4/4" in run("status", "latest")


@pytest.mark.parametrize(
    "command", [("report", "job"), ("report", "predictions"), ("status",), ("cancel",)]
)
def test_a_job_id_past_the_integer_range_is_no_job(any_db_url: str, command: tuple) -> None:
    # PostgreSQL's ids end at 2**31, SQLite's at 2**63: past them the driver or server errs.
    for ref in ("3000000000", "99999999999999999999"):
        out = run(*command, ref, ok=False)
        assert out == f"Error: no job {ref}; `cxrq report jobs` lists them\n"
