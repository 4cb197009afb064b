"""Heatmaps of a stored model: are they faithful, and what do they cost next to plain scoring?

    python -m benchmarks.explain_faithfulness --model REF [--images DIR] [--limit N]
        [--repeats 5] [--seed 0] [--out FILE]

REF is a model id, name or arch, resolved in CXRQ_DATABASE_URL as `cxrq score --model` does,
and loaded as a worker serves it (batch norms folded). The images are DIR's files (default:
the PNEUMONIA images of ../shared/data/chest_xray/test), the first N when --limit is given,
decoded as the model serves them (input size, contrast mapping, crop).

Printed as a markdown table (and written to --out FILE):
- deletion: the drop of P(PNEUMONIA) when the hottest 10% of pixels are deleted, against the
  same mask shape at 5 random places (ratio hot / random); also as logit drops with the share
  of images where the hot deletion wins, because P saturates near 1. Deleted pixels become a
  blurred copy of the image, and separately the image's mean grey;
- randomisation (Adebayo et al. 2018): the mean Spearman correlation between the trained
  model's maps and those of the same arch with freshly initialised weights (seeded): near 1
  would mean the maps show the image rather than what the model learned;
- cost: milliseconds per image of `training.scoring.inference.predict_proba` vs
  `explain_batch` on the same decoded images (median of --repeats runs after a warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import SHARED, machine
from training.models.checkpoint import ModelBundle

DEFAULT_IMAGES = SHARED / "chest_xray" / "test" / "PNEUMONIA"
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def load_served(ref: str) -> tuple[str, ModelBundle]:
    """(a one-line description, the served bundle) of the model REF names."""
    from db.lookups import resolve_model
    from db.session import session_scope
    from worker.model_cache import load_bundle

    with session_scope() as s:
        row = resolve_model(s, ref)
        model_id, name = row.id, row.name
    bundle = load_bundle(model_id)
    return f"model {model_id} {name!r}: {bundle.arch}@{bundle.img_size}", bundle


def kind_head_of(bundle: ModelBundle) -> str:
    """The kind head the model was trained with: from its config, else its output's width."""
    from training.models.registry import KIND_HEADS

    if bundle.config.get("kind_head") in KIND_HEADS:
        return bundle.config["kind_head"]
    probe = torch.zeros(1, 3, bundle.img_size, bundle.img_size, dtype=torch.uint8)
    with torch.inference_mode():
        out = bundle.model.eval()(bundle.normalizer(probe))
    width = 1 if out.dim() == 1 else out.shape[1]
    return {units: head for head, units in KIND_HEADS.items()}[width]


def random_twin(bundle: ModelBundle, seed: int) -> torch.nn.Module:
    """The same arch, input size and head with freshly initialised (seeded) weights, served
    the same way (eval, batch norms folded, channels last)."""
    from training.models.registry import create_model
    from training.scoring.inference import fold_batchnorm

    torch.manual_seed(seed)
    model = create_model(bundle.arch, bundle.img_size, kind_head=kind_head_of(bundle)).eval()
    return fold_batchnorm(model).to(memory_format=torch.channels_last)


def decode_folder(folder: Path, limit: int, bundle: ModelBundle) -> torch.Tensor:
    """The folder's images (the first `limit`, 0 = all) as the model serves them."""
    from training.data.preprocess import decode_many

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    paths = paths[:limit] if limit > 0 else paths
    if not paths:
        raise SystemExit(f"no images in {folder}")
    decoded = decode_many(paths, bundle.img_size, equalize_mode=bundle.equalize, crop=bundle.crop)
    if decoded.errors:
        print(f"skipped {len(decoded.errors)} unreadable files")
    return decoded.tensor


def median_seconds(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function. Runs alternate (a b a b ...), so load from other
    processes on a shared machine falls on both alike."""
    for fn in fns:
        fn()  # warm-up: allocator, oneDNN kernels, threads
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]


def deletion_rows(bundle: ModelBundle, images: torch.Tensor, maps: torch.Tensor) -> list[str]:
    from training.explain.faithfulness import deletion_drop

    rows = []
    for fill, what in (("blur", "a blurred copy"), ("mean", "the image's mean grey")):
        r = deletion_drop(bundle.model, images, bundle.normalizer, maps, fill=fill)
        rows += [
            f"| deletion, hottest 10% -> {what}: drop of P, hot / random (ratio) | "
            f"{r['hot_drop']:+.4f} / {r['random_drop']:+.4f} ({r['ratio']:.2f}) |",
            f"| deletion, hottest 10% -> {what}: drop of the logit, hot / random; "
            f"hot wins on | {r['hot_logit_drop']:+.3f} / {r['random_logit_drop']:+.3f}; "
            f"{r['win_rate']:.0%} of images |",
        ]
    return rows


def timing_rows(bundle: ModelBundle, images: torch.Tensor, repeats: int) -> list[str]:
    from training.explain.gradcam import explain_batch
    from training.scoring.inference import predict_proba

    n = images.shape[0]
    plain, explain = median_seconds(
        [
            lambda: predict_proba(bundle.model, images, bundle.normalizer),
            lambda: explain_batch(bundle.model, bundle.arch, images, bundle.normalizer),
        ],
        repeats,
    )
    return [
        f"| plain scoring (`predict_proba`), ms per image | {1e3 * plain / n:.3f} |",
        f"| scores + maps (`explain_batch`), ms per image | {1e3 * explain / n:.3f} |",
        f"| explain / plain | {explain / plain:.2f}x |",
    ]


def report(args: argparse.Namespace) -> str:
    from training.explain.faithfulness import randomization_check
    from training.explain.gradcam import explain_batch, target_layer

    source, bundle = load_served(args.model)
    images = decode_folder(args.images, args.limit, bundle)
    _, maps = explain_batch(bundle.model, bundle.arch, images, bundle.normalizer)
    twin = random_twin(bundle, args.seed)
    rand = randomization_check(bundle.model, twin, bundle.arch, images, bundle.normalizer)
    lines = [
        f"machine: {machine()}",
        f"{source}, maps at {target_layer(bundle.arch)} ({maps.shape[1]}x{maps.shape[2]})",
        f"images: {images.shape[0]} from {args.images}",
        "",
        "| measure | value |",
        "| --- | --- |",
        *deletion_rows(bundle, images, maps),
        f"| randomisation: Spearman of maps, trained vs random weights (seed {args.seed}) | "
        f"{rand['spearman_mean']:.3f} over {rand['n']} images |",
        *timing_rows(bundle, images, args.repeats),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model id, name or arch")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of images")
    parser.add_argument("--limit", type=int, default=0, help="first N images (0 = all)")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    try:
        text = report(args)
    except Exception as exc:
        if getattr(exc, "user_error", False):  # e.g. no such model: one line, as the CLI
            raise SystemExit(str(exc)) from None
        raise
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
