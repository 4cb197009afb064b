"""What a shadow model costs: scoring a chunk with a shadow beside the job's model, against the
job's model alone plus the shadow's inference alone (the goal: at most 1.1 times that sum).

    python -m benchmarks.shadow_bench [--copies 3] [--repeats 5] [--out results.md]

Files: the 150 full-resolution X-rays of ../shared/data/fullres linked `copies` times, scored in
units of 256 as a worker does (training.scoring.chunk.score_chunk). Models: GoogLeNet@64 as the
job's, ResNet50@64 as the shadow, freshly initialised (the cost does not depend on the weights).
Measured in one process, each the median of `repeats` rounds (a round runs all four in turn):
- primary alone: score_chunk with the job's model (decode + inference);
- shadow inference alone: the shadow on the decoded batches, no decode;
- primary + shadow, one decode: what a unit with --shadow runs (the decode memo shared);
- the plain baseline, primary + shadow decoding twice (two independent score_chunk calls).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import machine, repeated_fullres
from training.data.preprocess import decode_many
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model, normalizer_for
from training.scoring.chunk import Scorer, score_chunk
from training.scoring.inference import predict_outputs

UNIT = 256  # images per unit, as `cxrq score` plans them


def _bundle(arch: str, seed: int) -> ModelBundle:
    torch.manual_seed(seed)
    model = create_model(arch, 64).eval()
    return ModelBundle(model, arch, 64, normalizer_for(arch), 0.5, {})


def _units(paths: list[str]) -> list[list[str]]:
    return [paths[i : i + UNIT] for i in range(0, len(paths), UNIT)]


def _medians(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each run's median time over `repeats` rounds; a round times every run once, in turn,
    so a machine that speeds up or slows down meanwhile weighs on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(found) for name, found in times.items()}


def measure(paths: list[str], folder: Path, repeats: int) -> dict[str, float]:
    primary = Scorer([_bundle("googlenet", 0)], ["model:1"])
    shadow = Scorer([_bundle("resnet50", 1)], ["model:2"])
    units = _units(paths)
    decoded = [decode_many(u, 64).tensor for u in units]

    def primary_alone() -> None:
        for unit in units:
            score_chunk(primary, unit, folder)

    def shadow_inference() -> None:
        bundle = shadow.bundles[0]
        for images in decoded:
            predict_outputs(bundle.model, images, bundle.normalizer)

    def with_shadow() -> None:
        for unit in units:
            memo: dict = {}
            score_chunk(primary, unit, folder, memo=memo)
            score_chunk(shadow, unit, folder, memo=memo)

    def decoding_twice() -> None:
        for unit in units:
            score_chunk(primary, unit, folder)
            score_chunk(shadow, unit, folder)

    runs = {
        "primary alone": primary_alone,
        "shadow inference alone": shadow_inference,
        "primary + shadow, one decode (cxrq)": with_shadow,
        "primary + shadow, decoding twice (baseline)": decoding_twice,
    }
    with torch.inference_mode():
        primary_alone()  # warm the page cache and the kernels once
        return _medians(runs, repeats)


def table(times: dict[str, float], n: int) -> str:
    budget = times["primary alone"] + times["shadow inference alone"]
    lines = [
        "| run | seconds | images/s | vs primary + shadow inference |",
        "| --- | --- | --- | --- |",
    ]
    for name, seconds in times.items():
        lines.append(f"| {name} | {seconds:.2f} | {n / seconds:.0f} | {seconds / budget:.3f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = repeated_fullres(Path(tmp), args.copies)
        paths = sorted(str(p) for p in folder.rglob("*.jpeg"))
        times = measure(paths, folder, args.repeats)
    text = (
        f"{len(paths)} full-resolution files in units of {UNIT}, GoogLeNet@64 with a "
        f"ResNet50@64 shadow, median of {args.repeats} rounds, {torch.get_num_threads()} threads; "
        f"{machine()}\n\n{table(times, len(paths))}\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
