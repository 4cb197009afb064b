import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.main import cli
from db.schema import Evaluation, Job, Model, Prediction
from db.session import session_scope
from tests.conftest import make_xray


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
        assert "Traceback" not in result.output
    return result.output


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
    assert "is at schema 0002" in run("db", "upgrade")
