"""`cxrq report compare JOB`: a job's scorer against its shadow model on the same images."""

from __future__ import annotations

from typing import Any

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option, scores_line

PAIR_COLUMNS = ("gap", "prob", "label", "shadow_prob", "shadow_label", "true_label", "path")


@click.command("compare")
@click.argument("job_ref", metavar="JOB")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="disagreements listed (0: all)",
)
@format_option
def report_compare(job_ref: str, top: int, fmt: str) -> None:
    """How often a score job's scorer and its shadow model (`cxrq score --shadow`) agree, the
    images where their calls differ (widest gap in P first) and, on labelled images, the
    scores of both. The shadow's rows never decide and never count in the job's scores.

    Example: cxrq report compare 12 --top 10
    """
    with friendly_errors():
        from db.compare import compared_pairs, shadow_key
        from db.job_answers import answering_scorer
        from db.lookups import resolve_job
        from db.session import session_scope

        with session_scope() as s:
            job = resolve_job(s, job_ref)
            pairs = compared_pairs(s, job)
            own, other = answering_scorer(job), shadow_key(job)
        summary = _summary(job.id, own, other, pairs)
        differ = [_row(p) for p in pairs if p.both and p.label != p.shadow_label]
        if fmt == "json":
            emit([summary | {"disagreements": differ}], fmt, ())
            return
        if fmt == "table":
            click.echo(_summary_text(summary))
        emit(differ[:top] if top else differ, fmt, PAIR_COLUMNS)


def _row(p: Any) -> dict[str, Any]:
    return {
        "gap": round(p.gap, 4),
        "prob": p.prob,
        "label": p.label,
        "shadow_prob": p.shadow_prob,
        "shadow_label": p.shadow_label,
        "true_label": p.true_label,
        "path": p.path,
    }


def _summary(job_id: int, own: str, other: str, pairs: list) -> dict[str, Any]:
    both = [p for p in pairs if p.both]
    agree = sum(p.label == p.shadow_label for p in both)
    out: dict[str, Any] = {
        "job_id": job_id,
        "scorer": own,
        "shadow": other,
        "images": len(pairs),
        "both_scored": len(both),
        "agree": agree,
        "agreement": agree / len(both) if both else None,
        "shadow_failed": sum(p.prob is not None and p.shadow_prob is None for p in pairs),
    }
    labelled = [p for p in both if p.true_label is not None]
    if labelled:
        out["scores"] = _scores(labelled)
    return out


def _scores(pairs: list) -> dict[str, dict[str, Any]]:
    """Both scorers' scores on the same labelled images, each at its own operating point."""
    from training.evaluation.metrics import binary_scores

    y = [int(p.true_label == "PNEUMONIA") for p in pairs]
    out = {}
    for which, prefix in (("scorer", ""), ("shadow", "shadow_")):
        probs = [getattr(p, f"{prefix}prob") for p in pairs]
        calls = [int(getattr(p, f"{prefix}label") == "PNEUMONIA") for p in pairs]
        # The stored calls, each at its own operating point (the first row's threshold).
        cut = getattr(pairs[0], f"{prefix}threshold")
        out[which] = binary_scores(y, probs, 0.5 if cut is None else cut, pred=calls)
    return out


def _summary_text(s: dict[str, Any]) -> str:
    lines = [f"job {s['job_id']}: {s['scorer']} with shadow {s['shadow']}"]
    if s["agreement"] is None:
        lines.append("no image was scored by both")
    else:
        lines.append(
            f"agree on {s['agree']} of {s['both_scored']} images ({s['agreement']:.1%}); "
            f"{s['both_scored'] - s['agree']} disagree"
        )
    if s["shadow_failed"]:
        lines.append(f"the shadow failed on {s['shadow_failed']} images the scorer answered")
    for which, scores in s.get("scores", {}).items():
        lines.append(scores_line(f"{which} on {scores['n']} labelled", scores))
    return "\n".join(lines)
