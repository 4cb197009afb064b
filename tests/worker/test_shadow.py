"""Shadow scoring: a second model scores the same images beside the job's own, its rows stored
and compared, never deciding: not in the job's scores, counts or DICOM results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from db.schema import Evaluation, Job, Prediction
from db.session import session_scope
from tests.helpers import add_tiny_model, incoming_folder, job_id_of, run


@pytest.fixture()
def two_models(db_url: str, tiny_checkpoint: dict, tmp_path: Path) -> tuple[int, int]:
    primary = add_tiny_model(tiny_checkpoint, name="in-use")
    data = tiny_checkpoint["data"]  # the same split, so the two can also be an ensemble
    out = run("train", "--arch", "mlp", "--data", data, "--epochs", 1, "--img-size", 32)
    challenger = int(re.search(r"^model (\d+) stored", out, re.M).group(1))
    return primary, challenger


def _rows(job_id: int) -> list[Prediction]:
    with session_scope() as s:
        return list(s.scalars(select(Prediction).where(Prediction.job_id == job_id)))


def test_shadow_rows_are_stored_beside_and_never_decide(
    two_models: tuple[int, int], tmp_path: Path
) -> None:
    primary, challenger = two_models
    folder = incoming_folder(tmp_path)  # 12 files: 10 labelled, 1 unlabelled, 1 unreadable
    run("model", "promote", challenger, "--as", "challenger", "--why", "trying it out")
    out = run("score", folder, "--model", primary, "--shadow", "challenger")
    assert f"shadow: model {challenger}" in out
    job_id = job_id_of(out)
    rows = _rows(job_id)
    own = [r for r in rows if not r.shadow]
    shadow = [r for r in rows if r.shadow]
    assert {r.scorer for r in own} == {f"model:{primary}"} and len(own) == 12
    assert {r.scorer for r in shadow} == {f"model:{challenger}"} and len(shadow) == 12
    with session_scope() as s:
        job = s.get(Job, job_id)
        evaluations = s.scalars(select(Evaluation).where(Evaluation.job_id == job_id)).all()
        assert [e.model_id for e in evaluations] == [primary]  # the shadow's scores: not stored
        assert job.progress_done == 12
    report = json.loads(run("report", "job", job_id, "--format", "json"))
    assert report[0]["predictions"] == 12  # the job's own rows only
    compare = run("report", "compare", job_id)
    both = sum(r.prob is not None for r in own)
    agree = sum(
        a.label == b.label
        for a in own
        for b in shadow
        if a.path == b.path and a.prob is not None and b.prob is not None
    )
    assert f"agree on {agree} of {both} images" in compare
    assert "scorer on 10 labelled" in compare and "shadow on 10 labelled" in compare
    listed = json.loads(run("report", "compare", job_id, "--format", "json"))[0]
    assert len(listed["disagreements"]) == both - agree
    gaps = [d["gap"] for d in listed["disagreements"]]
    assert gaps == sorted(gaps, reverse=True)  # worst first
    csv = run("report", "predictions", job_id, "--format", "csv")
    header = csv.splitlines()[0].split(",")
    shadow_column = header.index("shadow")
    marks = {line.split(",")[shadow_column] for line in csv.splitlines()[1:]}
    assert marks == {"True", "False"}


def test_a_shadow_must_be_another_single_model(two_models: tuple[int, int], tmp_path: Path) -> None:
    primary, challenger = two_models
    folder = incoming_folder(tmp_path)
    out = run("score", folder, "--model", primary, "--shadow", primary, ok=False)
    assert "already scores this job" in out
    run("ensemble", "create", "pair", "--member", f"{primary}=1", "--member", f"{challenger}=1")
    out = run("score", folder, "--model", primary, "--shadow", "pair", ok=False)
    assert "name a single model" in out
    out = run("score", folder, "--model", "pair", "--shadow", challenger, ok=False)
    assert "already scores this job" in out  # a member of the ensemble


@pytest.mark.parametrize("said", ["shadow weights unreadable", ""])
def test_a_failing_shadow_stores_its_errors_and_the_job_succeeds(
    two_models: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str
) -> None:
    from worker import score_unit

    primary, challenger = two_models
    real = score_unit.serving_scorer

    def broken(ref):
        if ref.model_ids == [challenger]:
            raise RuntimeError(said)
        return real(ref)

    monkeypatch.setattr(score_unit, "serving_scorer", broken)
    out = run("score", incoming_folder(tmp_path), "--model", primary, "--shadow", challenger)
    job_id = job_id_of(out)
    assert f"job {job_id} succeeded" in out
    shadow = [r for r in _rows(job_id) if r.shadow]
    assert len(shadow) == 12
    assert all(r.error.endswith(f"shadow RuntimeError: {said}") for r in shadow)
