"""`cxrq model promote|history` and `cxrq report audit`: a person names the model that scores,
training a new one changes nothing, and every change is in the trail."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import make_xray
from tests.helpers import add_tiny_model, job_id_of, run, site_folder


def _scored_by(out: str) -> int:
    return int(re.search(r"with model (\d+)", out).group(1))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    for i in range(3):
        make_xray(tmp_path / "in" / f"x{i}.png", i % 2 == 0, seed=i)
    return tmp_path / "in"


def test_a_new_model_changes_no_score_until_it_is_promoted(
    db_url: str, tiny_checkpoint: dict, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXRQ_ACTOR", "dr-kim")
    first = add_tiny_model(tiny_checkpoint)
    out = run("score", folder)  # one model: it, and the job says why
    assert _scored_by(out) == first and "the only model" in out
    job = json.loads(run("report", "job", job_id_of(out), "--format", "json"))[0]
    assert "scored by model" in job["message"] and "the only model" in job["message"]
    second = add_tiny_model(tiny_checkpoint, name="later")  # as if trained since
    out = run("score", folder, ok=False)
    assert "2 models and no `default` alias" in out and "cxrq model promote" in out
    out = run("score", folder, "--model", "cnn", ok=False)  # an arch behind two models
    assert "2 cnn models" in out and "name one by id" in out
    run("model", "promote", first, "--as", "default", "--why", "validated on our ward")
    assert _scored_by(run("score", folder)) == first
    train = tiny_checkpoint["data"]
    trained = run("train", "--arch", "mlp", "--data", train, "--epochs", 1, "--img-size", 32)
    newest = int(re.search(r"^model (\d+) stored", trained, re.M).group(1))
    out = run("score", folder)
    assert _scored_by(out) == first and f"alias default (model {first})" in out
    moved = run("model", "promote", newest, "--as", "default", "--why", "beat it on 400 images")
    assert f"moved from model {first}" in moved
    assert _scored_by(run("score", folder)) == newest
    history = json.loads(run("model", "history", "--format", "json"))
    assert [(h["from_model_id"], h["to_model_id"]) for h in history] == [
        (first, newest),
        (None, first),
    ]
    assert {h["actor"] for h in history} == {"dr-kim"}
    assert history[0]["why"] == "beat it on 400 images"
    assert "default" in run("report", "models") and second


def test_a_site_alias_wins_at_its_site_and_needs_a_profile_there(
    db_url: str, tiny_checkpoint: dict, folder: Path, tmp_path: Path
) -> None:
    first = add_tiny_model(tiny_checkpoint)
    second = add_tiny_model(tiny_checkpoint, name="other")
    run("model", "promote", first, "--as", "default", "--why", "everywhere")
    out = run("model", "promote", second, "--as", "default", "--site", "st-marys",
              "--why", "theirs", ok=False)  # fmt: skip
    assert "no site named 'st-marys'" in out
    site = site_folder(tmp_path / "site")
    run("calibrate", second, "--data", site, "--site", "st-marys", "--target-sensitivity", 0.9)
    run("model", "promote", second, "--as", "default", "--site", "st-marys", "--why", "theirs")
    assert _scored_by(run("score", folder, "--site", "st-marys")) == second
    assert _scored_by(run("score", folder)) == first  # elsewhere: the global alias
    out = run("model", "promote", first, "--as", "other", "--why", "x", ok=False)
    assert "is a model's name" in out


def test_report_audit_filters_by_action_actor_job_and_time(
    db_url: str, tiny_checkpoint: dict, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = add_tiny_model(tiny_checkpoint)
    monkeypatch.setenv("CXRQ_ACTOR", "nurse-a")
    job = job_id_of(run("score", folder))
    monkeypatch.setenv("CXRQ_ACTOR", "dr-b")
    run("model", "promote", model, "--as", "default", "--why", "in use from today")
    rows = json.loads(run("report", "audit", "--format", "json"))
    assert [(r["action"], r["actor"]) for r in rows] == [("promote", "dr-b"), ("score", "nurse-a")]
    by_job = json.loads(run("report", "audit", "--job", job, "--format", "json"))
    assert [r["action"] for r in by_job] == ["score"] and by_job[0]["detail"]["images"] == 3
    assert json.loads(run("report", "audit", "--actor", "dr-b", "--format", "json"))[0]["why"]
    assert json.loads(run("report", "audit", "--since", "2999-01-01", "--format", "json")) == []
    assert len(json.loads(run("report", "audit", "--since", "1d", "--format", "json"))) == 2
    assert "give 7d" in run("report", "audit", "--since", "last week", ok=False)
