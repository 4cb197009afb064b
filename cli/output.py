"""Printing report rows as a table (people), CSV or JSON (machines)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import click

FORMATS = ("table", "csv", "json")
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people; csv or json for machines",
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width table; long cells are kept whole (paths matter)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return out.getvalue().rstrip("\n")


def emit(
    rows: Sequence[dict[str, Any]],
    fmt: str,
    table_columns: Sequence[str],
    csv_columns: Sequence[str] | None = None,
) -> None:
    """Print rows in fmt; JSON carries every key, CSV the flat ones, the table a readable few."""
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
    elif fmt == "csv":
        click.echo(to_csv(rows, csv_columns or table_columns))
    elif rows:
        click.echo(table(rows, table_columns))
    else:
        click.echo("(none)")


def scores_line(title: str, s: dict[str, Any]) -> str:
    """All of a score dict on one line, for people."""
    auc_text = _auc_text(s.get("roc_auc"))
    return (
        f"{title}: F1 {s['f1']:.4f}  precision {s['precision']:.4f}  "
        f"sensitivity {s['sensitivity']:.4f}  specificity {s['specificity']:.4f}  "
        f"accuracy {s['accuracy']:.4f}  AUC {auc_text}  "
        f"(TP {s['tp']} FP {s['fp']} TN {s['tn']} FN {s['fn']}, n {s['n']}, "
        f"threshold {s['threshold']:.2f})"
    ) + kind_text(s)


def _auc_text(auc: float | None) -> str:
    """An AUC to four places; '-' where there is none (one class only: None or NaN)."""
    return "-" if auc is None or auc != auc else f"{auc:.4f}"


def kind_text(s: dict[str, Any]) -> str:
    """The bacterial-vs-viral scores (VIRAL positive) when the scores carry them, else ''."""
    if s.get("kind_n") is None:
        return ""
    auc_text = _auc_text(s.get("kind_roc_auc"))
    return (
        f"; kind (viral vs bacterial, {s['kind_n']} pneumonias): AUC {auc_text}  "
        f"accuracy {s['kind_accuracy']:.4f}  viral sensitivity {s['kind_sensitivity']:.4f}  "
        f"specificity {s['kind_specificity']:.4f}"
    )
