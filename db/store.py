"""Writes: jobs and their progress, trained models, evaluations, idempotent prediction rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.audit import current_actor
from db.columns import IDENTITY_COLUMNS, KIND_COLUMNS, REVIEW_COLUMNS, SCORE_COLUMNS
from db.schema import (
    FINAL_STATES,
    Ensemble,
    Evaluation,
    Heatmap,
    Job,
    Model,
    Prediction,
    utcnow,
)
from db.session import session_scope

# What a prediction row stores beside its key (job, scorer, path).
PREDICTION_VALUES = (
    "prob",
    "label",
    "true_label",
    "error",
    "model_id",
    "ensemble_id",
    "prob_viral",
    "kind",
    *REVIEW_COLUMNS,
    *IDENTITY_COLUMNS,
    "shadow",
    "brightness",
)


class NotFoundError(LookupError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback

    def __str__(self) -> str:
        return str(self.args[0])


def create_job(session: Session, kind: str, params: dict[str, Any]) -> Job:
    job = Job(kind=kind, params=params, state="pending", message="queued", actor=current_actor())
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}; `cxrq report jobs` lists them")
    return job


def mark_running(job_id: int, total: int = 0, message: str = "running") -> None:
    with session_scope() as s:
        job = get_job(s, job_id)
        job.state, job.started_at = "running", job.started_at or utcnow()
        job.progress_total, job.message = total, message


def set_progress(job_id: int, done: int, total: int, message: str) -> None:
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(progress_done=done, progress_total=total, message=message)
        )


def finish_job(
    job_id: int,
    state: str,
    message: str = "",
    error: str | None = None,
    model_id: int | None = None,
) -> None:
    assert state in FINAL_STATES, state
    with session_scope() as s:
        job = get_job(s, job_id)
        job.state, job.message, job.error, job.finished_at = state, message, error, utcnow()
        if model_id is not None:
            job.model_id = model_id


def save_model(session: Session, **fields: Any) -> Model:
    model = Model(**fields)
    session.add(model)
    session.flush()
    return model


def save_weights(
    session: Session, weights: bytes, name: str, arch: str, img_size: int, **fields: Any
) -> Model:
    """A models row holding the given weights with nothing learned about them (no config, no
    data, threshold 0.5 unless given): a model made by hand, as benchmarks and tests make."""
    defaults = {"preset": "seed", "threshold": 0.5, "config": {}, "data": {}, "n_params": 0}
    return save_model(
        session,
        **defaults | fields,
        name=name,
        arch=arch,
        img_size=img_size,
        weights=weights,
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        train_seconds=0.0,
    )


def save_ensemble(
    session: Session, name: str, method: str, members: list[dict[str, Any]]
) -> Ensemble:
    """A new ensemble row; members are [{"model_id": 3, "weight": 0.5}, ...]."""
    ensemble = Ensemble(name=name, method=method, members=members, params={})
    session.add(ensemble)
    session.flush()
    return ensemble


def save_ensemble_fit(
    session: Session,
    ensemble_id: int,
    threshold: float,
    params: dict[str, Any],
    members: list[dict[str, Any]],
) -> None:
    """A stacking fit replaces the ensemble's method, threshold, parameters and members."""
    ensemble = session.get(Ensemble, ensemble_id)
    ensemble.method, ensemble.threshold, ensemble.fitted_at = "stacking", threshold, utcnow()
    ensemble.params, ensemble.members = params, members


def save_evaluation(
    session: Session,
    split: str,
    dataset: str,
    scores: dict[str, Any],
    job_id: int | None = None,
    model_id: int | None = None,
    ensemble_id: int | None = None,
) -> Evaluation:
    """Scores of a model (model_id) or an ensemble (ensemble_id) on one labelled set."""
    if (model_id is None) == (ensemble_id is None):
        raise ValueError("an evaluation belongs to exactly one model or ensemble")
    values = {k: scores[k] for k in SCORE_COLUMNS}
    values.update({k: scores.get(k) for k in KIND_COLUMNS})
    for auc in ("roc_auc", "kind_roc_auc"):
        if values[auc] != values[auc]:  # NaN: one class only, AUC undefined
            values[auc] = None
    evaluation = Evaluation(
        model_id=model_id,
        ensemble_id=ensemble_id,
        job_id=job_id,
        split=split,
        dataset=dataset,
        **values,
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def upsert_predictions(
    session: Session, rows: Iterable[dict[str, Any]], overwrite: bool = True
) -> int:
    """Insert prediction rows; a row whose (job, model, path) exists is never doubled:
    it is overwritten, or with overwrite=False left as it was."""
    rows = list(rows)
    if not rows:
        return 0
    _upsert(session, Prediction, rows, PREDICTION_VALUES, overwrite)
    return len(rows)


def _upsert(
    session: Session, table: type, rows: list[dict[str, Any]], columns: tuple, overwrite: bool
) -> None:
    """Insert rows keyed on (job_id, scorer, path): a redelivered chunk never doubles a row."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
    if insert is None:
        raise RuntimeError(f"upsert is not implemented for {dialect}")
    stmt = insert(table)
    key = ["job_id", "scorer", "path"]
    if overwrite:
        stmt = stmt.on_conflict_do_update(
            index_elements=key, set_={c: stmt.excluded[c] for c in columns}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    session.execute(stmt, rows)


def upsert_heatmaps(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Heatmap rows (db.schema.Heatmap), overwritten when a re-sent chunk computes them again."""
    rows = list(rows)
    if rows:
        columns = ("height", "width", "grid", "crop", "method")
        _upsert(session, Heatmap, rows, columns, overwrite=True)
    return len(rows)
