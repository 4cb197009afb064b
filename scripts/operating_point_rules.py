"""Where each threshold rule puts a stored model's operating point on new patients: the rules
are fitted on the model's own tuning split, rebuilt exactly as `fit` built it, and only reported
on test/ (other patients, other time).

    python scripts/operating_point_rules.py sqlite:////work/runs/site.db:1 [DB_URL:ID ...] \
        [--mean] [--test DIR]

Rules: balanced (Youden's J on the tuning split), the highest cut keeping 95/97/98/99% of the
tuning split's pneumonias, and 0.5. With --mean, the same table for the models' averaged
P(PNEUMONIA) (they must share one tuning split: same data, split seed and fractions).
Databases are opened read-only; no threshold is fitted on test/.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import torch

from training.data.data_files import find_splits
from training.evaluation.metrics import binary_scores, roc_auc
from training.fitting.config import TrainConfig
from training.fitting.outputs import finite_outputs
from training.fitting.split_policy import three_way_split
from training.fitting.thresholds import balanced_threshold, sensitivity_threshold
from training.fitting.training_data import DecodedSplit, decode_split
from training.models.checkpoint import ModelBundle, from_bytes

TARGETS = (0.95, 0.97, 0.98, 0.99)


@dataclass
class Stored:
    """A model row, read-only: its config, what fit recorded, the stored threshold and weights."""

    url: str
    model_id: int
    config: TrainConfig
    raw_config: dict
    data: dict
    threshold: float
    train_seconds: float
    bundle: ModelBundle
    test_row: dict | None  # the stored test/ evaluation, as fit scored it


def _connect(url: str) -> sqlite3.Connection:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise SystemExit(f"{url}: only sqlite URLs are read here")
    return sqlite3.connect(f"file:{url[len(prefix) :]}?mode=ro", uri=True)


def load(url: str, model_id: int) -> Stored:
    with _connect(url) as db:
        db.row_factory = sqlite3.Row
        m = db.execute(
            "SELECT config, data, threshold, train_seconds, weights FROM models WHERE id = ?",
            (model_id,),
        ).fetchone()
        if m is None:
            raise SystemExit(f"{url}: no model {model_id}")
        test = db.execute(
            "SELECT * FROM evaluations WHERE model_id = ? AND split = 'test' ORDER BY id",
            (model_id,),
        ).fetchall()
    raw = json.loads(m["config"]) if isinstance(m["config"], str) else m["config"]
    data = json.loads(m["data"]) if isinstance(m["data"], str) else m["data"]
    return Stored(
        url,
        model_id,
        TrainConfig.from_dict(raw),
        raw,
        data,
        float(m["threshold"]),
        float(m["train_seconds"]),
        from_bytes(bytes(m["weights"])),
        dict(test[0]) if test else None,
    )


_decoded: dict[tuple, DecodedSplit] = {}


def _decode(items: list, config: TrainConfig) -> DecodedSplit:
    """decode_split, once per file list and decoding (the models of a run share them)."""
    key = (tuple(i.path for i in items), config.img_size, config.equalize, config.crop)
    if key not in _decoded:
        _decoded[key] = decode_split(items, config)
    return _decoded[key]


@dataclass
class Probs:
    tune_y: torch.Tensor
    tune_p: torch.Tensor
    test_y: torch.Tensor
    test_p: torch.Tensor
    tune_key: tuple  # the tuning split's files: models averaged must share it


def probabilities(m: Stored, test_dir: str | None) -> Probs:
    """P(PNEUMONIA) on the tuning split (rebuilt as fit built it) and on test/."""
    root = m.data["root"]
    splits = find_splits(root)
    _, tune_items, _, how = three_way_split(splits, m.config)
    if how != m.data.get("validation") or len(tune_items) != m.data.get("n_tune"):
        raise SystemExit(f"model {m.model_id}: the rebuilt split differs from the stored one")
    if not tune_items:
        raise SystemExit(f"model {m.model_id} has no tuning split (tune_fraction 0)")
    test_items = find_splits(test_dir)["test"] if test_dir else splits.get("test", [])
    tune, test = _decode(tune_items, m.config), _decode(test_items, m.config)
    norm = m.bundle.normalizer
    tune_p = finite_outputs(m.bundle.model, tune, norm, m.config, "on the tuning split")[0]
    test_p = finite_outputs(m.bundle.model, test, norm, m.config, "on test/")[0]
    key = tuple(i.path for i in tune_items)
    return Probs(tune.labels, tune_p.double(), test.labels, test_p.double(), key)


def rules(y: torch.Tensor, p: torch.Tensor) -> list[tuple[str, float]]:
    """(rule, threshold), every one fitted on the tuning split's labels and P only."""
    found = [("balanced", balanced_threshold(y, p))]
    found += [(f"sens>={t:.2f}", sensitivity_threshold(y, p, t)) for t in TARGETS]
    return found + [("0.5", 0.5)]


def _row(name: str, cut: float, tune: dict, test: dict) -> str:
    return (
        f"{name:<12} {cut:>9.5f}  {tune['sensitivity']:.4f} {tune['specificity']:.4f}  "
        f"{test['sensitivity']:.4f} {test['specificity']:.4f} {test['accuracy']:.4f}  "
        f"{test['tp']:>3} {test['fp']:>3} {test['tn']:>3} {test['fn']:>3}"
    )


def table(probs: Probs, stored: float | None) -> list[str]:
    lines = [
        f"tuning split n={probs.tune_y.numel()} (PNEUMONIA {int(probs.tune_y.sum())}), "
        f"AUC {roc_auc(probs.tune_y, probs.tune_p):.4f}; test/ n={probs.test_y.numel()} "
        f"(PNEUMONIA {int(probs.test_y.sum())}), AUC {roc_auc(probs.test_y, probs.test_p):.4f}",
        f"{'rule':<12} {'threshold':>9}  tune_sens tune_spec  test_sens test_spec test_acc  "
        "TP FP TN FN",
    ]
    cuts = ([("stored", stored)] if stored is not None else []) + rules(probs.tune_y, probs.tune_p)
    for name, cut in cuts:
        tune = binary_scores(probs.tune_y, probs.tune_p, cut)
        test = binary_scores(probs.test_y, probs.test_p, cut)
        lines.append(_row(name, cut, tune, test))
    return lines


def describe(m: Stored) -> list[str]:
    c = m.config
    line = (
        f"== {m.url} model {m.model_id}: {c.arch} preset {c.preset}, precision "
        f"{c.precision} (stored config: {m.raw_config.get('precision', 'none')}, amp "
        f"{m.raw_config.get('amp', 'none')}), seed {c.seed}, init_seed {c.init_seed}, "
        f"best epoch {m.data.get('best_epoch')}, train {m.train_seconds:.1f} s, stored threshold "
        f"{m.threshold:.5f}"
    )
    out = [line]
    if m.test_row:
        t = m.test_row
        out.append(
            f"stored test/ evaluation: sens {t['sensitivity']:.4f} spec {t['specificity']:.4f} "
            f"acc {t['accuracy']:.4f} AUC {t['roc_auc']:.4f} (threshold {t['threshold']:.5f})"
        )
    return out


def check(m: Stored, probs: Probs) -> str:
    """The rebuilt tuning split gives back the stored threshold, and test/ the stored scores."""
    if m.config.threshold == "balanced":
        again = balanced_threshold(probs.tune_y, probs.tune_p)
    elif m.config.threshold == "sensitivity":
        again = sensitivity_threshold(probs.tune_y, probs.tune_p, m.config.target_sensitivity)
    else:
        again = float(m.config.threshold)
    same = abs(again - m.threshold) < 1e-9
    test = binary_scores(probs.test_y, probs.test_p, m.threshold)
    agrees = m.test_row is None or all(test[k] == m.test_row[k] for k in ("tp", "fp", "tn", "fn"))
    return (
        f"check: threshold rebuilt on the tuning split {again:.5f} "
        f"({'= stored' if same else 'DIFFERS from stored'}); test/ counts at it "
        f"{'match the stored evaluation' if agrees else 'DIFFER from the stored evaluation'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="DB_URL:MODEL_ID, e.g. sqlite:////x.db:1")
    parser.add_argument("--mean", action="store_true", help="also the models' averaged P")
    parser.add_argument("--test", default=None, help="test folder (default: the model's root)")
    args = parser.parse_args()
    test_dir = str(Path(args.test).parent) if args.test else None
    every = []
    for spec in args.models:
        url, model_id = spec.rsplit(":", 1)
        m = load(url, int(model_id))
        probs = probabilities(m, test_dir)
        print("\n".join([*describe(m), check(m, probs), *table(probs, m.threshold)]), flush=True)
        print()
        every.append((m, probs))
    if args.mean and len(every) > 1:
        first = every[0][1]
        for _, p in every[1:]:
            if p.tune_key != first.tune_key or not torch.equal(p.test_y, first.test_y):
                raise SystemExit("--mean: the models do not share one tuning split and test/")
        mean = Probs(
            first.tune_y,
            torch.stack([p.tune_p for _, p in every]).mean(0),
            first.test_y,
            torch.stack([p.test_p for _, p in every]).mean(0),
            first.tune_key,
        )
        names = ", ".join(f"{m.url} model {m.model_id}" for m, _ in every)
        print(f"== mean P of {len(every)} models: {names}")
        print("\n".join(table(mean, None)))


if __name__ == "__main__":
    main()
