"""Print the README's results table from a cxrq database: every model and ensemble with its
validation and external test/ scores side by side, training minutes, and the command that
reproduces the row.

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/results_table.py
"""

from __future__ import annotations

from typing import Any

from cli.report_cmd import SIDE_BY_SIDE
from db.reports import ensembles_report, models_report
from db.schema import Model
from db.session import session_scope
from training.fitting.config import make_config

DATA = "../shared/data/chest_xray"
COLUMNS = (
    "model",
    "preset",
    "val F1",
    "val sens",
    "val spec",
    "val acc",
    "val AUC",
    "test sens",
    "test spec",
    "test acc",
    "test AUC",
    "val kind AUC",
    "test kind AUC",
    "test kind acc",
    "threshold",
    "train min",
    "command",
)
HEADER = f"| {' | '.join(COLUMNS)} |\n|{' --- |' * len(COLUMNS)}"
# The report keys behind the score columns, in order: the same side-by-side set as
# `cxrq report models`; precision and test F1 live in the CSV.
SCORE_KEYS = (*SIDE_BY_SIDE, "val_threshold")


def _cells(row: dict[str, Any]) -> str:
    """Score cells of a report row; "-" where it has none (no test/ split, or AUC undefined)."""
    return " | ".join("-" if row[k] is None else f"{row[k]:.4f}" for k in SCORE_KEYS)


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
    "equalize": "--equalize",
    "crop": "--crop",
    "threshold": "--threshold",
    "pretrained": "--pretrained",
    "target_sensitivity": "--target-sensitivity",
    "photometric": "--photometric",
    "label_smoothing": "--label-smoothing",
    "balance": "--balance",
    "kind_head": "--kind-head",
    "precision": "--precision",
}


BOOL_FLAGS = {"--pretrained": ("--pretrained", "--scratch")}


def _flag(flag: str, value: Any) -> str:
    """`--flag value`; a boolean option is its on or off spelling."""
    if isinstance(value, bool):
        on, off = BOOL_FLAGS[flag]
        return on if value else off
    return f"{flag} {value}"


def train_command(name: str, config: dict[str, Any]) -> str:
    """The `cxrq train` command that rebuilds a model from its stored config: its preset plus
    what differs from it. A key the stored config (older models) or the preset lacks is skipped,
    as that model was trained before the option existed."""
    preset = make_config(config["arch"], config["preset"]).to_dict()
    options = [f"--arch {config['arch']} --preset {config['preset']}"]
    options += [
        _flag(flag, config[key])
        for key, flag in FLAGS.items()
        if key in config and key in preset and config[key] != preset[key]
    ]
    if name != config["arch"]:
        options.append(f"--name {name}")
    return f"`cxrq train {' '.join(options)} --data {DATA}`"


def _ensemble_command(e: dict) -> str:
    """create + fit with every member the ensemble was created with (dropped ones included)."""
    ids = [m.split("=")[0] for m in e["members"].split(", ")]
    ids += [i for i in e["dropped"].split(", ") if i]
    members = " ".join(f"--member {i}=1" for i in sorted(ids, key=int))
    select = " --select" if "member selection" in (e["validation"] or "") else ""
    return f"`cxrq ensemble create {e['name']} {members} && cxrq ensemble fit {e['name']}{select}`"


def model_line(m: dict[str, Any], config: dict[str, Any]) -> str:
    """A model's table line from its models_report row and stored config."""
    command = train_command(m["name"], config)
    return (
        f"| {m['name']} (model {m['id']}) | {m['preset']} | {_cells(m)} | "
        f"{m['train_minutes']:.1f} | {command} |"
    )


def ensemble_line(e: dict[str, Any]) -> str:
    """An ensemble's table line from its ensembles_report row."""
    if e["method"] == "vote" and e["name"] == "seed":
        command = "`cxrq ensemble create seed --preset seed`"
    else:
        command = _ensemble_command(e)
    name = f"ensemble {e['name']} ({e['method']}: {e['members']})"
    return f"| {name} | - | {_cells(e)} | - | {command} |"


def main() -> None:
    with session_scope() as s:
        models, ensembles = models_report(s), ensembles_report(s)
        configs = {m.id: m.config for m in s.query(Model)}
    print(HEADER)
    for m in models:
        print(model_line(m, configs[m["id"]]))
    for e in ensembles:
        print(ensemble_line(e))


if __name__ == "__main__":
    main()
