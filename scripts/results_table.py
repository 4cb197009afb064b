"""Print the README's results table from a cxrq database: every model and ensemble with its
validation scores, training minutes, and the command that reproduces the row.

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/results_table.py
"""

from __future__ import annotations

from db.queries import ensembles_report, models_report
from db.session import session_scope

DATA = "../shared/data/chest_xray"
HEADER = (
    "| model | preset | F1 | precision | sensitivity | specificity | accuracy | ROC AUC | "
    "threshold | train min | command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | "
    "--- | --- |"
)


def _cells(row: dict) -> str:
    keys = ("f1", "precision", "sensitivity", "specificity", "accuracy", "roc_auc", "threshold")
    return " | ".join(f"{row['val_' + k]:.4f}" for k in keys)


def _ensemble_command(e: dict) -> str:
    """create + fit with every member the ensemble was created with (dropped ones included)."""
    ids = [m.split("=")[0] for m in e["members"].split(", ")]
    ids += [i for i in e["dropped"].split(", ") if i]
    members = " ".join(f"--member {i}=1" for i in sorted(ids, key=int))
    select = " --select" if "member selection" in (e["validation"] or "") else ""
    return f"`cxrq ensemble create {e['name']} {members} && cxrq ensemble fit {e['name']}{select}`"


def main() -> None:
    with session_scope() as s:
        models, ensembles = models_report(s), ensembles_report(s)
    print(HEADER)
    for m in models:
        command = f"`cxrq train --arch {m['arch']} --preset {m['preset']} --data {DATA}`"
        print(
            f"| {m['arch']} (model {m['id']}) | {m['preset']} | {_cells(m)} | "
            f"{m['train_minutes']:.1f} | {command} |"
        )
    for e in ensembles:
        if e["method"] == "vote" and e["name"] == "seed":
            command = "`cxrq ensemble create seed --preset seed`"
        else:
            command = _ensemble_command(e)
        print(
            f"| ensemble {e['name']} ({e['method']}: {e['members']}) | - | {_cells(e)} | - | "
            f"{command} |"
        )


if __name__ == "__main__":
    main()
