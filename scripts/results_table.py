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
            members = " ".join(f"--member {m.split('=')[0]}=1" for m in e["members"].split(", "))
            command = (
                f"`cxrq ensemble create {e['name']} {members} && cxrq ensemble fit {e['name']}`"
            )
        print(
            f"| ensemble {e['name']} ({e['method']}: {e['members']}) | - | {_cells(e)} | - | "
            f"{command} |"
        )


if __name__ == "__main__":
    main()
