"""A score job settles with its batch's drift stored: the message says DRIFT (and the audit
trail has the alarm) when its rows moved away from the model's reference, shadow rows never
count, and a model without a reference says so instead of a verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.governance import AuditEntry
from db.schema import Model, Prediction
from db.session import session_scope
from db.work import finish_unit
from tests.conftest import make_xray
from tests.helpers import add_placeholder_model, job_row, make_score_job
from training.evaluation.drift import reference_sample
from worker.settle import settle


def rows_like(seed: int, n: int, shift: float = 0.0) -> list[tuple]:
    """(prob, label, ood_score, review_reasons): P around 0.3 (higher with shift), OOD scores
    around 0.4, one image in twenty-five not-cxr."""
    rng = np.random.default_rng(seed)
    prob = 1 / (1 + np.exp(-(rng.normal(-0.8, 1.0, n) + shift)))
    ood = rng.gamma(4.0, 0.1, n) + shift / 3
    flagged = rng.random(n) < 0.04
    return [
        (float(p), "PNEUMONIA" if p >= 0.5 else "NORMAL", float(o), "not-cxr" if f else None)
        for p, o, f in zip(prob, ood, flagged, strict=True)
    ]


def model_with_reference(n: int = 150, reference: bool = True) -> int:
    """A placeholder model whose validation reference is rows_like(0, n)."""
    rows = rows_like(0, n)
    sample = reference_sample(
        [r[0] for r in rows],
        [r[1] == "PNEUMONIA" for r in rows],
        [r[2] for r in rows],
        {name: [r[3] == name for r in rows] for name in ("not-cxr", "anomaly")},
        "validation split",
    )
    with session_scope() as s:
        model_id = add_placeholder_model(s, "watched", "cnn", None)
        if reference:
            s.get(Model, model_id).data = {"monitoring": {"sample": sample}}
    return model_id


def scored_job(tmp_path: Path, model_id: int, rows: list[tuple], shadow: list[tuple] = ()) -> int:
    """A score job of the model whose units are done and whose rows are `rows` (and `shadow`,
    the same scorer's shadow rows)."""
    folder = tmp_path / "ward"
    make_xray(folder / "x.jpeg", False, 0)
    job_id, units = make_score_job(folder, model_id)
    with session_scope() as s:
        for unit_id in units:
            finish_unit(s, unit_id)
        for i, (prob, label, ood, reasons) in enumerate([*rows, *shadow]):
            s.add(
                Prediction(
                    job_id=job_id,
                    scorer=f"model:{model_id}",
                    model_id=model_id,
                    path=f"{folder}/{i}.jpeg",
                    prob=prob,
                    label=label,
                    ood_score=ood,
                    review_reasons=reasons,
                    shadow=i >= len(rows),
                )
            )
    settle(job_id)
    return job_id


def test_a_shifted_batch_settles_with_drift_in_its_message_row_and_audit(
    db_url: str, tmp_path: Path
) -> None:
    model_id = model_with_reference()
    job_id = scored_job(tmp_path, model_id, rows_like(1, 120, shift=1.5))
    job = job_row(job_id)
    assert job.state == "succeeded", job.message
    assert job.drift["verdict"] == "drift" and job.drift["n"] == 120
    assert "; DRIFT: " in job.message and "P KS D" in job.message, job.message
    assert job.drift["reference"] == f"model {model_id}'s validation split"
    with session_scope() as s:
        alarm = s.scalars(select(AuditEntry).where(AuditEntry.action == "drift-alarm")).one()
        assert (alarm.job_id, alarm.model_id) == (job_id, model_id)


def test_shadow_rows_are_left_out_of_the_batch(db_url: str, tmp_path: Path) -> None:
    model_id = model_with_reference()
    shadow = rows_like(2, 300, shift=3.0)
    job = job_row(scored_job(tmp_path, model_id, rows_like(3, 120), shadow))
    assert job.drift["verdict"] == "no drift" and job.drift["n"] == 120, job.drift
    assert "DRIFT" not in job.message
    assert min(t["holm_p"] for t in job.drift["tests"]) > 0.05


def test_no_stored_reference_is_no_reference_never_a_verdict(db_url: str, tmp_path: Path) -> None:
    model_id = model_with_reference(reference=False)
    job = job_row(scored_job(tmp_path, model_id, rows_like(4, 120, shift=2.0)))
    assert job.drift["verdict"] == "no reference" and job.drift["tests"] == []
    assert "fitted before drift references" in job.drift["note"]
    assert "DRIFT" not in job.message
