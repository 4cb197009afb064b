"""`cxrq report models|ensembles|jobs|job|predictions`: what is stored, as a table, CSV or JSON.

The `report` group lives here; its heatmap and html commands, in cli.report_visual_cmd, are
added to it in cli.main."""

from __future__ import annotations

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option
from cli.report_drift_cmd import job_drift_line
from db.columns import COUNTS, IDENTITY_COLUMNS, KIND_COLUMNS, REVIEW_COLUMNS, REVIEW_REASONS
from db.columns import RATES as SCORES

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
    "val_kind_roc_auc",
    "test_kind_roc_auc",
    "test_kind_accuracy",
)
ALL_SCORES = tuple(
    f"{split}_{k}" for split in ("val", "test") for k in (*SCORES, *COUNTS, *KIND_COLUMNS)
)
MODEL_KEYS = ("id", "name", "arch", "preset", "img_size", "epochs")
MODEL_COLUMNS = (*MODEL_KEYS, "aliases", *SIDE_BY_SIDE, "train_minutes")
MODEL_CSV = (*MODEL_KEYS, "aliases", *ALL_SCORES, "seed", "train_minutes", "created_at")
EVAL_COLUMNS = (
    "scorer",
    "split",
    "job_id",
    *SCORES,
    "n",
    "kind_roc_auc",
    "kind_accuracy",
    "dataset",
)
JOB_COLUMNS = ("id", "kind", "state", "model_id", "done", "total", "created_at", "message")
JOB_CSV = (*JOB_COLUMNS[:-1], "finished_at", "threshold", "site_profile_id", "message", "error")
PREDICTION_COLUMNS = (
    "scorer",
    "prob_pneumonia",
    "label",
    "prob_viral",
    "kind",
    "true_label",
    "path",
    "error",
)
REVIEW_TABLE = (
    "review_reasons",
    "review_score",
    "ood_score",
    "anomaly_score",
    "confidence",
    "disagreement",
    "scorer",
    "prob_pneumonia",
    "label",
    "true_label",
    "path",
)
PREDICTION_CSV = (
    "job_id",
    "scorer",
    "model_id",
    "ensemble_id",
    "model",
    "path",
    "prob_pneumonia",
    "label",
    "prob_viral",
    "kind",
    "true_label",
    "error",
    "threshold",  # the operating point that decided the label
    "site_profile_id",
    *REVIEW_COLUMNS,
    "shadow",  # a shadow model's row (`cxrq score --shadow`): compared, never deciding
    "brightness",  # the mean grey level of the model's input (drift monitoring)
    *IDENTITY_COLUMNS,  # DICOM files: SOP Instance UID and the salted patient hash
)
SITE_COLUMNS = (
    "id",
    "site",
    "model_id",
    "adapted_model_id",
    "threshold",
    "target",
    "sensitivity",
    "sensitivity_low",
    "sensitivity_high",
    "specificity",
    "specificity_low",
    "specificity_high",
    "images",
    "patients",
    "normal_patients",
    "pneumonia_patients",
    "created_at",
)
SITE_CSV = (
    *SITE_COLUMNS[:-1],
    "state",
    "rule",
    "raw_threshold",
    "sensitivity_new_low",  # 95% interval of what a new set of as many patients will show
    "sensitivity_new_high",
    "roc_auc",
    "prevalence",
    "normal_images",
    "pneumonia_images",
    "job_id",
    "weights_sha256",
    "created_at",
)


def report_rows(query: str, *args: object) -> list[dict]:
    """The rows db.reports' QUERY answers for ARGS, after closing abandoned jobs."""
    from db import reports
    from db.session import session_scope

    close_abandoned_jobs()
    with session_scope() as s:
        result = getattr(reports, query)(s, *args)
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
    _with_other_evaluations("models_report", fmt, MODEL_COLUMNS, MODEL_CSV)


def _with_other_evaluations(query: str, fmt: str, columns: tuple, csv: tuple) -> None:
    """The report's rows, then below a table every evaluation but validation, test/ included
    (json carries them too)."""
    with friendly_errors():
        rows = report_rows(query)
    emit(rows, fmt, columns, csv)
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
    _with_other_evaluations("ensembles_report", fmt, ENSEMBLE_COLUMNS, ENSEMBLE_CSV)


@report.command("jobs")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@format_option
def report_jobs(limit: int, fmt: str) -> None:
    """The newest jobs, newest first.

    Example: cxrq report jobs --limit 10
    """
    with friendly_errors():
        emit(report_rows("jobs_report", limit), fmt, JOB_COLUMNS, JOB_CSV)


@report.command("job")
@click.argument("job_ref")
@format_option
def report_job(job_ref: str, fmt: str) -> None:
    """One job (an id, or 'latest'): state, parameters, counts and the scores it stored.

    Example: cxrq report job latest
    """
    with friendly_errors():
        rows = report_rows("job_report", job_ref)
    if fmt != "table":
        emit(rows, fmt, (), (*JOB_CSV, "predictions", "errors"))
        return
    job = rows[0]
    shown = ("finished_at", "threshold", "site_profile_id", "predictions", "errors", "params")
    for key in (*JOB_COLUMNS, *shown, "error"):
        if job.get(key) is not None:
            click.echo(f"{key:12} {job[key]}")
    if job.get("review"):
        click.echo(f"{'review':12} {review_line(job['review'])}")
    if job["kind"] == "score" and (drift := job_drift_line(job.get("drift"))) is not None:
        click.echo(f"{'drift':12} {drift}")
    if job.get("devices"):  # a job's units may have run on several workers' devices
        ran = ", ".join(f"{device} ({n} units)" for device, n in job["devices"].items())
        click.echo(f"{'ran on':12} {ran}")
    if job["evaluations"]:
        click.echo("")
        emit(job["evaluations"], fmt, EVAL_COLUMNS[1:])


def review_line(review: dict) -> str:
    """'55 of 300 flagged (not-cxr 3, anomaly 11, low-confidence 47); coverage 0.817; accuracy
    0.943 unflagged (245 labelled), 0.913 all'; the accuracy part only with true labels."""
    why = ", ".join(f"{r} {review[r]}" for r in REVIEW_REASONS if review[r])
    line = f"{review['flagged']} of {review['scored']} flagged"
    line += f" ({why})" if why else ""
    line += f"; coverage {review['coverage']:.3f}"
    if review["accuracy_unflagged"] is not None:
        line += (
            f"; accuracy {review['accuracy_unflagged']:.3f} unflagged "
            f"({review['labelled_unflagged']} labelled), {review['accuracy_all']:.3f} all"
        )
    return line


@report.command("predictions")
@click.argument("job_ref")
@click.option(
    "--review",
    is_flag=True,
    help="only the calls flagged for a person (not-cxr, anomaly, low-confidence, lateral), "
    "worst first",
)
@format_option
def report_predictions(job_ref: str, review: bool, fmt: str) -> None:
    """The prediction rows of a scoring job (an id, or 'latest').

    Example: cxrq report predictions 7 --format csv
    """
    with friendly_errors():
        rows = report_rows("predictions_report", job_ref, review)
        emit(rows, fmt, REVIEW_TABLE if review else PREDICTION_COLUMNS, PREDICTION_CSV)


@report.command("sites")
@click.option("--all", "include_replaced", is_flag=True, help="replaced profiles too")
@format_option
def report_sites(include_replaced: bool, fmt: str) -> None:
    """Every site profile: its model, threshold and target, the 95% intervals of sensitivity
    and specificity it gave on the site's images, and what it rests on (json: the whole
    profile, with reliability, review lines and monitoring reference).

    Example: cxrq report sites --format csv
    """
    from db.session import session_scope
    from db.sites import sites_report

    with friendly_errors(), session_scope() as s:
        rows = sites_report(s, include_replaced)
    emit(rows, fmt, SITE_COLUMNS, SITE_CSV)
