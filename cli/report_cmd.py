"""`cxrq report models|jobs|job|predictions`: what is stored, as a table, CSV or JSON."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option

SCORES = ("f1", "precision", "sensitivity", "specificity", "accuracy", "roc_auc")
COUNTS = ("tp", "fp", "tn", "fn", "threshold", "n")
# The table shows validation and the external test/ split side by side; to stay readable it
# leaves out precision (and test F1), which CSV and JSON carry with every count.
SIDE_BY_SIDE = (
    "val_f1",
    "val_sensitivity",
    "val_specificity",
    "val_accuracy",
    "val_roc_auc",
    "test_sensitivity",
    "test_specificity",
    "test_accuracy",
    "test_roc_auc",
)
ALL_SCORES = tuple(f"{split}_{k}" for split in ("val", "test") for k in (*SCORES, *COUNTS))
MODEL_KEYS = ("id", "name", "arch", "preset", "img_size", "epochs")
MODEL_COLUMNS = (*MODEL_KEYS, *SIDE_BY_SIDE, "train_minutes")
MODEL_CSV = (*MODEL_KEYS, *ALL_SCORES, "seed", "train_minutes", "created_at")
EVAL_COLUMNS = ("scorer", "split", "job_id", *SCORES, "n", "dataset")
JOB_COLUMNS = ("id", "kind", "state", "model_id", "done", "total", "created_at", "message")
JOB_CSV = (*JOB_COLUMNS[:-1], "finished_at", "message", "error")
PREDICTION_COLUMNS = ("scorer", "prob_pneumonia", "label", "true_label", "path", "error")
PREDICTION_CSV = (
    "job_id",
    "scorer",
    "model_id",
    "ensemble_id",
    "model",
    "path",
    "prob_pneumonia",
    "label",
    "true_label",
    "error",
)


def _rows(query: str, *args: object) -> list[dict]:
    from db import queries
    from db.session import session_scope

    close_abandoned_jobs()
    with session_scope() as s:
        result = getattr(queries, query)(s, *args)
    return result if isinstance(result, list) else [result]


def close_abandoned_jobs() -> None:
    """Before showing jobs: an embedded job whose process was killed is shown failed, not
    running for ever."""
    from db.session import session_scope
    from db.settings import get_settings
    from db.work import close_abandoned

    with session_scope() as s:
        close_abandoned(s, get_settings().lease_seconds)


@click.group()
def report() -> None:
    """Query stored jobs, models, scores and predictions.

    Example: cxrq report predictions latest --format csv
    """


@report.command("models")
@format_option
def report_models(fmt: str) -> None:
    """Every model with its validation and test/ scores (json: every other evaluation too).

    Example: cxrq report models --format json
    """
    with friendly_errors():
        rows = _rows("models_report")
    emit(rows, fmt, MODEL_COLUMNS, MODEL_CSV)
    _other_evaluations(rows, fmt)


def _other_evaluations(rows: list[dict], fmt: str) -> None:
    """Below a table: every evaluation but validation, test/ included (json carries them too)."""
    evaluations = [e for r in rows for e in r["evaluations"]]
    if fmt == "table" and evaluations:
        click.echo("\nother evaluations")
        emit(evaluations, fmt, EVAL_COLUMNS)


ENSEMBLE_KEYS = ("id", "name", "method", "members", "threshold")
ENSEMBLE_COLUMNS = (*ENSEMBLE_KEYS, *SIDE_BY_SIDE)
ENSEMBLE_CSV = (*ENSEMBLE_KEYS, *ALL_SCORES, "fitted_at", "validation", "dropped")


@report.command("ensembles")
@format_option
def report_ensembles(fmt: str) -> None:
    """Every ensemble: members=weights, threshold, validation and test/ scores (json: all).

    Example: cxrq report ensembles --format json
    """
    with friendly_errors():
        rows = _rows("ensembles_report")
    emit(rows, fmt, ENSEMBLE_COLUMNS, ENSEMBLE_CSV)
    _other_evaluations(rows, fmt)


@report.command("jobs")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@format_option
def report_jobs(limit: int, fmt: str) -> None:
    """The newest jobs, newest first.

    Example: cxrq report jobs --limit 10
    """
    with friendly_errors():
        emit(_rows("jobs_report", limit), fmt, JOB_COLUMNS, JOB_CSV)


@report.command("job")
@click.argument("job_ref")
@format_option
def report_job(job_ref: str, fmt: str) -> None:
    """One job (an id, or 'latest'): state, parameters, counts and the scores it stored.

    Example: cxrq report job latest
    """
    with friendly_errors():
        rows = _rows("job_report", job_ref)
    if fmt != "table":
        emit(rows, fmt, (), (*JOB_CSV, "predictions", "errors"))
        return
    job = rows[0]
    for key in (*JOB_COLUMNS, "finished_at", "predictions", "errors", "params", "error"):
        if job.get(key) is not None:
            click.echo(f"{key:12} {job[key]}")
    if job["evaluations"]:
        click.echo("")
        emit(job["evaluations"], fmt, EVAL_COLUMNS[1:])


@report.command("predictions")
@click.argument("job_ref")
@format_option
def report_predictions(job_ref: str, fmt: str) -> None:
    """The prediction rows of a scoring job (an id, or 'latest').

    Example: cxrq report predictions 7 --format csv
    """
    with friendly_errors():
        emit(_rows("predictions_report", job_ref), fmt, PREDICTION_COLUMNS, PREDICTION_CSV)
