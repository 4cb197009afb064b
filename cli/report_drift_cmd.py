"""`cxrq report drift`: each (site, model) pair's newest scored images against the reference
its site profile (or, without a site, its validation split) was fitted with, and the line a
job's report shows for its own batch."""

from __future__ import annotations

from typing import Any

import click

from cli.errors import friendly_errors
from cli.output import emit, format_option

DRIFT_COLUMNS = (
    "site",
    "model_id",
    "n",
    "reference_n",
    "statistic",
    "test",
    "batch",
    "reference",
    "effect",
    "p",
    "holm_p",
    "verdict",
)
DRIFT_CSV = (*DRIFT_COLUMNS, "alarm", "profile_id", "reference_source", "alpha", "note")


@click.command("drift")
@click.option("--site", default=None, help="one site's pairs (its name, as `calibrate` gave it)")
@click.option("--model", "model_ref", default=None, help="one model (id, alias, name or arch)")
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="images per pair: its newest scored rows",
)
@format_option
def report_drift(site: str | None, model_ref: str | None, last: int, fmt: str) -> None:
    """Drift alarms: per (site, model), the share of PNEUMONIA calls, each review flag's share
    and the distributions of P and of the OOD score over its newest images, each against the
    reference with a two-sample test (Fisher exact, Kolmogorov-Smirnov), Holm over all of
    them, and a verdict: drift, no drift, no reference, too few images.

    Example: cxrq report drift --site st-marys --last 200
    """
    with friendly_errors():
        pairs = _pairs(site, model_ref, last)
    if fmt == "json":
        emit(pairs, fmt, ())
        return
    rows = [row for pair in pairs for row in _flat(pair)]
    if site is not None and not rows and fmt == "table":
        click.echo(f"site {site}: no scored images; no reference to compare")
        return
    emit(rows, fmt, DRIFT_COLUMNS, DRIFT_CSV)
    notes = {(r["site"], r["model_id"]): r["note"] for r in rows if r.get("note")}
    for (name, model_id), note in notes.items() if fmt == "table" else ():
        click.echo(f"{name} / model {model_id}: {note}")


def _pairs(site: str | None, model_ref: str | None, last: int) -> list[dict[str, Any]]:
    """Every pair's drift result (training.evaluation.drift.compare) with who it is."""
    from db.drift import pair_reference, running_pairs, running_rows
    from db.lookups import resolve_model
    from db.session import session_scope
    from training.evaluation.drift import compare_rows

    out = []
    with session_scope() as s:
        model_id = resolve_model(s, model_ref).id if model_ref is not None else None
        for pair in running_pairs(s, site, model_id):
            reference = pair_reference(s, pair)
            result = compare_rows(reference.sample, running_rows(s, pair, last), reference.note)
            who = {"site": pair.site or "(none)", "model_id": pair.model_id}
            out.append(who | {"profile_id": pair.profile_id, "reference": reference.what} | result)
    return out


def _flat(pair: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per statistic tested (one row when nothing was)."""
    keys = ("site", "model_id", "profile_id", "n", "reference_n", "alpha", "verdict", "note")
    head = {k: pair.get(k) for k in keys} | {"reference_source": pair["reference"]}
    if not pair["tests"]:
        return [head]
    return [head | test for test in pair["tests"]]


def job_drift_line(drift: dict[str, Any] | None) -> str | None:
    """A job's stored drift result as one line: 'no drift against site st-marys (profile 2):
    300 images, 7 statistics, smallest Holm p 0.41' (None: the job has none, e.g. it settled
    before drift alarms existed)."""
    from training.evaluation.drift import alarm_line

    if not drift:
        return None
    verdict, against = drift["verdict"], drift.get("reference") or "its reference"
    if verdict == "no reference":
        return f"no reference ({drift.get('note') or 'none stored'})"
    if verdict == "too few images":
        return f"too few images ({drift['n']}; at least {drift['min_images']}) for {against}"
    smallest = min(t["holm_p"] for t in drift["tests"])
    line = f"{verdict} against {against}: {drift['n']} images, {len(drift['tests'])} statistics"
    line += f", smallest Holm p {max(smallest, 1e-12):.2g}"
    return f"{line}; DRIFT: {alarm_line(drift)}" if verdict == "drift" else line
