"""Why a stored model scores lower on new patients: ranking (AUC, specificity at fixed
sensitivity) or operating point (threshold, prevalence), calibration on validation vs an
external folder, and errors by pneumonia kind, brightness and contrast.

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/external_diagnosis.py MODEL \
        [--external ../shared/data/chest_xray/test] [--prevalence 0.625]

Nothing here is fitted on the external folder: it is only scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from db.lookups import resolve_model
from db.session import session_scope
from training.data.data_files import LabeledImage, find_splits, pneumonia_kind
from training.evaluation.error_analysis import (
    calibration_table,
    errors_by_group,
    operating_points,
    quartile_groups,
)
from training.fitting.config import TrainConfig
from training.fitting.split_policy import choose_validation
from training.scoring.files import score_files_multi
from training.scoring.prevalence import prior_shift
from worker.model_cache import load_bundle


def _score(bundle, items: list[LabeledImage]):  # noqa: ANN001, ANN202
    scored = score_files_multi([bundle], [i.path for i in items])
    keep = [n for n in range(len(items)) if n not in scored.errors]
    y = torch.tensor([items[n].label for n in keep])
    return [items[n] for n in keep], y, scored.probs[0, keep]


def _image_stats(paths: list[str]) -> tuple[list[float], list[float]]:
    from training.data.preprocess import decode_many

    x = decode_many(paths, 64).tensor.double()
    return x.mean(dim=(1, 2, 3)).tolist(), x.std(dim=(1, 2, 3)).tolist()


def _print(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    for row in rows:
        print(
            "  "
            + "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--external", default=None, help="labelled folder (default: ROOT/test)")
    parser.add_argument("--prevalence", type=float, default=0.625)
    args = parser.parse_args()
    with session_scope() as s:
        model = resolve_model(s, args.model)
        model_id, root, config = model.id, model.data["root"], TrainConfig.from_dict(model.config)
    bundle = load_bundle(model_id)
    splits = find_splits(root)
    _, val_items, _ = choose_validation(splits, config)
    external = find_splits(args.external)["train"] if args.external else splits["test"]
    points = []
    for name, items in (("validation", val_items), ("external", external)):
        kept, y, prob = _score(bundle, items)
        points.append({"set": name, **operating_points(y, prob, bundle.threshold)})
        _print(f"calibration on {name}", calibration_table(y, prob))
        if name == "external":
            shifted = prior_shift(prob, bundle.train_prior, args.prevalence)
            at_half = operating_points(y, shifted, 0.5)
            points.append({"set": f"external, prevalence {args.prevalence}", **at_half})
            kinds = [pneumonia_kind(i.path) or "normal" for i in kept]
            brightness, contrast = _image_stats([i.path for i in kept])
            groups = errors_by_group(y, prob, bundle.threshold, kinds)
            groups += errors_by_group(
                y, prob, bundle.threshold, quartile_groups(brightness, "bright")
            )
            groups += errors_by_group(
                y, prob, bundle.threshold, quartile_groups(contrast, "contrast")
            )
            _print(f"errors on {name} at threshold {bundle.threshold:.3f}", groups)
    _print(f"model {model_id} ({Path(root).name})", points)


if __name__ == "__main__":
    main()
