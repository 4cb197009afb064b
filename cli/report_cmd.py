"""`cxrq report models|jobs|job|predictions`: what is stored, as a table, CSV or JSON."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option
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
MODEL_COLUMNS = (*MODEL_KEYS, *SIDE_BY_SIDE, "train_minutes")
MODEL_CSV = (*MODEL_KEYS, *ALL_SCORES, "seed", "train_minutes", "created_at")
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
JOB_CSV = (*JOB_COLUMNS[:-1], "finished_at", "message", "error")
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
    *REVIEW_COLUMNS,
    *IDENTITY_COLUMNS,  # DICOM files: SOP Instance UID and the salted patient hash
)


def _rows(query: str, *args: object) -> list[dict]:
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
    if job.get("review"):
        click.echo(f"{'review':12} {review_line(job['review'])}")
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
    help="only the calls flagged for a person (not-cxr, anomaly, low-confidence), worst first",
)
@format_option
def report_predictions(job_ref: str, review: bool, fmt: str) -> None:
    """The prediction rows of a scoring job (an id, or 'latest').

    Example: cxrq report predictions 7 --format csv
    """
    with friendly_errors():
        rows = _rows("predictions_report", job_ref, review)
        emit(rows, fmt, REVIEW_TABLE if review else PREDICTION_COLUMNS, PREDICTION_CSV)


@report.command("html")
@click.argument("job_ref", required=False)
@click.option("--models", "models", is_flag=True, help="the model comparison page instead")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="the HTML file to write (self-contained: images and plots embedded)",
)
def report_html(job_ref: str | None, models: bool, output: Path) -> None:
    """A self-contained HTML page: a scoring job's (an id, or 'latest') or, with --models, every
    model and ensemble side by side. It needs no network: open it anywhere.

    Example: cxrq report html latest -o job.html
    """
    with friendly_errors():
        if models == (job_ref is not None):
            raise click.UsageError("give a JOB or --models, not both")
        from cli.html.pages import job_page, models_page
        from db.session import session_scope

        close_abandoned_jobs()
        with session_scope() as s:
            try:
                page = models_page(s) if models else job_page(s, job_ref)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        try:
            output.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output} ({len(page.encode()) / 1e6:.1f} MB)")


HEATMAP_KEYS = ("job_id", "scorer", "path", "method", "prob_pneumonia", "label", "kind", "box")


@report.command("heatmap")
@click.argument("job_ref")
@click.argument("path")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the X-ray at its own resolution with the heatmap overlaid and the hottest "
    "region boxed (PNG)",
)
@click.option("--scorer", default=None, help="model:ID or ensemble:ID (default: the job's own)")
@format_option
def report_heatmap(
    job_ref: str, path: str, output: Path | None, scorer: str | None, fmt: str
) -> None:
    """Where the model saw pneumonia in one image of a job scored with --explain: the hottest
    region's box in the original image's pixels (left, top, right, bottom; right and bottom
    exclusive), and with -o an overlay PNG.

    PATH is the image's path as scored, or a unique ending of it (e.g. its file name).

    Example: cxrq report heatmap latest person1_virus_6.jpeg -o out.png
    """
    with friendly_errors():
        row = _heatmap(job_ref, path, scorer, output)
    if fmt == "table":
        for key in HEATMAP_KEYS:
            click.echo(f"{key:15} {_shown(row.get(key))}")
        if output:
            click.echo(f"wrote {output}")
    else:
        emit([row], fmt, (), HEATMAP_KEYS)


def _shown(value: object) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _heatmap(job_ref: str, path: str, scorer: str | None, output: Path | None) -> dict:
    from training.explain import overlay
    from training.explain.grid import decode_grid

    absolute = Path(path).expanduser()
    wanted = str(absolute.resolve()) if absolute.exists() else path
    row = _rows("heatmap_report", job_ref, wanted, scorer)[0]
    grid = decode_grid(row.pop("grid"), row["height"], row["width"])
    shape, path, crop = (row["height"], row["width"]), row["path"], row["crop"]
    if output is not None:
        box = overlay.render_overlay(path, grid, *shape, crop, output)
    else:
        box = overlay.hottest_box(grid, *shape, overlay.image_size(path), crop)
    row["box"] = list(box) if box else None
    row["grid"] = [round(v, 4) for v in grid.ravel().tolist()]
    return row
