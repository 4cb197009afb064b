"""Print the README's results table from a cxrq database: every model and ensemble with its
validation scores, training minutes, and the command that reproduces the row.

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/results_table.py
"""

from __future__ import annotations

from db.queries import ensembles_report, models_report
from db.schema import Model
from db.session import session_scope
from training.config import TrainConfig, make_config

DATA = "../shared/data/chest_xray"
HEADER = (
    "| model | preset | F1 | precision | sensitivity | specificity | accuracy | ROC AUC | "
    "threshold | train min | command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | "
    "--- | --- |"
)


def _cells(row: dict) -> str:
    keys = ("f1", "precision", "sensitivity", "specificity", "accuracy", "roc_auc", "threshold")
    return " | ".join(f"{row['val_' + k]:.4f}" for k in keys)


# The train options a stored config can differ from its preset by, as `cxrq train` spells them.
FLAGS = {
    "img_size": "--img-size",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "seed": "--seed",
    "init_seed": "--init-seed",
    "val_fraction": "--val-fraction",
    "max_images_per_class": "--max-per-class",
}


def train_command(name: str, config: TrainConfig) -> str:
    """The `cxrq train` command that rebuilds a model: its preset plus what differs from it."""
    preset = make_config(config.arch, config.preset).to_dict()
    options = [f"--arch {config.arch} --preset {config.preset}"]
    options += [
        f"{flag} {value}"
        for key, flag in FLAGS.items()
        if (value := config.to_dict()[key]) != preset[key]
    ]
    if name != config.arch:
        options.append(f"--name {name}")
    return f"`cxrq train {' '.join(options)} --data {DATA}`"


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
        configs = {m.id: TrainConfig.from_dict(m.config) for m in s.query(Model)}
    print(HEADER)
    for m in models:
        command = train_command(m["name"], configs[m["id"]])
        print(
            f"| {m['name']} (model {m['id']}) | {m['preset']} | {_cells(m)} | "
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
