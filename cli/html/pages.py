"""The two pages: what they show is gathered here through db/ queries, drawn by the templates.

A job's images are sorted so that what needs a person comes first: flagged calls (worst
`review_score` first), then wrong calls (with true labels), then the least confident.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from cli.html.images import overlay, thumbnail
from cli.html.svg import Chart
from db.job_answers import answer_rows, review_summary, scorer_info
from db.lookups import resolve_job
from db.reports import (
    ensembles_report,
    evaluation_row,
    job_evaluations,
    job_row,
    models_by_id,
    models_report,
)
from db.schema import Heatmap, Prediction
from db.sites import sites_report

# Larger views (with the heatmap where stored) for the first images in sort order only, so a
# 10,000-image job stays a file of tens of megabytes; the rest open their thumbnail.
LARGE_VIEWS = 300
PAGE_SIZE = 60  # images per page of the grid

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _sort_key(row: Prediction) -> tuple:
    wrong = row.true_label is not None and row.label != row.true_label
    doubt = row.confidence if row.confidence is not None else abs((row.prob or 0.5) - 0.5)
    if row.review:
        return (0, -(row.review_score or 0.0), row.path)
    return (1 if wrong else 2, doubt, row.path)


def _item(row: Prediction, heatmap: Heatmap | None, large: bool) -> dict[str, Any]:
    thumb = thumbnail(row.path)
    view = overlay(row.path, heatmap) if (large and heatmap is not None) else None
    if large and view is None:
        view = thumbnail(row.path, 384)
    return {
        "name": Path(row.path).name,
        "path": row.path,
        "prob": None if row.prob is None else round(row.prob, 4),
        "label": row.label,
        "true": row.true_label,
        "kind": row.kind,
        "reasons": row.review_reasons or "",
        "confidence": None if row.confidence is None else round(row.confidence, 3),
        "wrong": row.true_label is not None and row.label != row.true_label,
        "thumb": thumb,
        "view": view,
        "heatmap": view is not None and heatmap is not None,
    }


def _curves(labelled: list[Prediction]) -> dict[str, Any]:
    """ROC, PR and reliability charts, the confusion matrix and the operating point."""
    from training.evaluation.curves import (  # cli/ imports training lazily
        pr_points,
        reliability,
        roc_points,
    )

    y = [int(r.true_label == "PNEUMONIA") for r in labelled]
    p = [r.prob for r in labelled]
    called = [int(r.label == "PNEUMONIA") for r in labelled]
    tp = sum(a and b for a, b in zip(y, called, strict=True))
    fp = sum((not a) and b for a, b in zip(y, called, strict=True))
    pos, neg = sum(y), len(y) - sum(y)
    fn, tn = pos - tp, neg - fp
    roc = Chart("ROC", "false positive rate", "true positive rate", diagonal=True)
    roc.lines.append(("ROC", roc_points(y, p)))
    if pos and neg:
        roc.points.append(("operating point", fp / neg, tp / pos))
    pr = Chart("Precision-recall", "recall", "precision")
    pr.lines.append(("PR", pr_points(y, p)))
    if pos and tp + fp:
        pr.points.append(("operating point", tp / pos, tp / (tp + fp)))
    bins = reliability(y, p)
    calib = Chart("Reliability", "mean P(PNEUMONIA)", "share PNEUMONIA", diagonal=True)
    calib.lines.append(("observed", [(b[0], b[1]) for b in bins]))
    return {
        "charts": [Markup(c.svg()) for c in (roc, pr, calib)],
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "bins": bins,
        "has_both": bool(pos and neg),
    }


def job_page(session: Session, ref: str) -> str:
    """The HTML page of a scoring (or evaluation) job."""
    job = resolve_job(session, ref)
    if job.kind != "score":
        raise ValueError(f"job {job.id} is a {job.kind} job; pages are for scoring jobs")
    rows, maps = answer_rows(session, job)
    scored = sorted((r for r in rows if r.error is None), key=_sort_key)
    errors = sorted((r for r in rows if r.error is not None), key=lambda r: r.path)
    items = [_item(r, maps.get(r.path), i < LARGE_VIEWS) for i, r in enumerate(scored)]
    labelled = [r for r in scored if r.true_label is not None]
    evaluations = job_evaluations(session, job.id)
    return _env.get_template("job.html").render(
        job=job_row(job),
        duration=_duration(job.started_at, job.finished_at),
        scorer=scorer_info(session, job),
        review=review_summary(session, job),
        counts={
            "rows": len(rows),
            "scored": len(scored),
            "errors": len(errors),
            "labelled": len(labelled),
            "heatmaps": len(maps),
        },
        curves=_curves(labelled) if labelled else None,
        evaluations=[evaluation_row(e) for e in evaluations],
        items=items,
        errors=[{"path": r.path, "error": r.error} for r in errors],
        page_size=PAGE_SIZE,
        generated=datetime.now().isoformat(timespec="seconds"),
    )


def _duration(start: datetime | None, end: datetime | None) -> str | None:
    if start is None or end is None:
        return None
    seconds = (end - start).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _history_charts(history: list[dict[str, Any]]) -> list[Markup]:
    if not history:
        return []
    loss = [(h["epoch"], h["loss"]) for h in history if math.isfinite(h.get("loss", math.nan))]
    top = max([v for _, v in loss] + [1e-9])
    epochs = max(h["epoch"] for h in history)
    loss_chart = Chart("Training loss", "epoch", "loss", x_max=epochs, y_max=round(top * 1.1, 3))
    loss_chart.lines.append(("loss", loss))
    auc = Chart("AUC per epoch", "epoch", "AUC", x_max=epochs)
    for key, name in (("val_auc", "validation"), ("tune_auc", "tuning split")):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            auc.lines.append((name, points))
    lowest = min((y for _, pts in auc.lines for _, y in pts), default=0.0)
    auc.y_min = math.floor(lowest * 20) / 20  # to the 0.05 below: the curves' detail shows
    return [Markup(loss_chart.svg()), Markup(auc.svg())]


def _site_rocs(session: Session) -> Chart:
    """Each active site profile's ROC on its site's images, and the operating point it chose."""
    chart = Chart("ROC at each site", "false positive rate", "true positive rate", diagonal=True)
    for row in sites_report(session):
        name = f"{row['site']} (model {row['adapted_model_id'] or row['model_id']})"
        if row["profile"].get("roc"):
            chart.lines.append((name, [tuple(p) for p in row["profile"]["roc"]]))
        chart.points.append((f"{row['site']} @ {row['threshold']:.2f}",
                             1 - row["specificity"], row["sensitivity"]))  # fmt: skip
    return chart


def models_page(session: Session) -> str:
    """Every model and ensemble: validation and test/ scores side by side, ROC curves overlaid
    where training stored them (models trained before it stored none), training curves and
    configs."""
    models = models_report(session)
    extra = models_by_id(session)
    rocs = {
        split: Chart(f"ROC on {name}", "false positive rate", "true positive rate", diagonal=True)
        for split, name in (("validation", "validation"), ("test", "test/"))
    }
    for row in models:
        model = extra[row["id"]]
        row["charts"] = _history_charts(model.data.get("history", []))
        row["config"] = model.config
        for split, chart in rocs.items():
            points = model.data.get("roc", {}).get(split)
            if points:
                chart.lines.append((f"{row['id']} {row['name']}", [tuple(p) for p in points]))
    return _env.get_template("models.html").render(
        models=models,
        ensembles=ensembles_report(session),
        rocs=[Markup(c.svg()) for c in (*rocs.values(), _site_rocs(session)) if c.lines],
        generated=datetime.now().isoformat(timespec="seconds"),
    )
