"""Which kind head: the binary model, a second output for P(VIRAL | PNEUMONIA), or a 3-way
softmax? Trains each on the same split over several runs (init seeds) and prints, per head, the
P(PNEUMONIA) scores on validation and on the external test/ split beside the kind's scores, as
mean and spread over runs, so a change can be told from run-to-run noise.

    python -m benchmarks.kind_head_bench --arch googlenet --heads none two three --runs 5
    python -m benchmarks.kind_head_bench --arch cnn --runs 2 --epochs 2   # a quick look

Only training/ is used (no database): it runs wherever torch does, a GPU machine included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED, machine
from training.fitting.config import make_config
from training.fitting.fit import fit

COLUMNS = (
    ("val_roc_auc", "val AUC"),
    ("test_roc_auc", "test AUC"),
    ("test_sensitivity", "test sens"),
    ("test_specificity", "test spec"),
    ("test_kind_roc_auc", "test kind AUC"),
    ("test_kind_accuracy", "test kind acc"),
    ("test_kind_sensitivity", "test viral sens"),
    ("test_kind_specificity", "test viral spec"),
    ("val_kind_roc_auc", "val kind AUC"),
    ("seconds", "train s"),
)


def one_run(arch: str, head: str, run: int, data: str, overrides: dict[str, Any]) -> dict:
    config = make_config(arch, kind_head=head, init_seed=run, **overrides)
    result = fit(config, data)
    row = {"head": head, "run": run, "seconds": result.seconds}
    for split, scores in (("val", result.val_scores), ("test", result.test_scores or {})):
        row.update({f"{split}_{k}": v for k, v in scores.items()})
    return row


def _cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summary(rows: list[dict], heads: list[str]) -> str:
    """Markdown: one line per head, mean ± standard deviation over its runs."""
    lines = [
        "| head | runs | " + " | ".join(name for _, name in COLUMNS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for head in heads:
        mine = [r for r in rows if r["head"] == head]
        cells = [_cell([r.get(key) for r in mine]) for key, _ in COLUMNS]
        lines.append(f"| {head} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="googlenet")
    parser.add_argument("--heads", nargs="+", default=["none", "two", "three"])
    parser.add_argument("--runs", type=int, default=3, help="init seeds 1..N on one split")
    parser.add_argument("--data", default=str(SHARED / "chest_xray"))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write JSON lines here")
    args = parser.parse_args()
    overrides = {"epochs": args.epochs, "img_size": args.img_size}
    print(f"# kind heads, {args.arch}, default preset; {machine()}", flush=True)
    rows = []
    for run in range(1, args.runs + 1):
        for head in args.heads:
            row = one_run(args.arch, head, run, args.data, overrides)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    print(summary(rows, args.heads))


if __name__ == "__main__":
    sys.exit(main())
