"""The scoring sections of benchmarks.gpu_bench (run that; this module has no command of its own):
synthesised full-resolution files, decode alone, inference alone, `score_files_multi` end to end,
and worker processes sharing one device.

Like gpu_bench it imports only training.*, torch, PIL and the standard library: the worker
processes are spawned (a forked child cannot use CUDA) and import this module.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from threading import BrokenBarrierError

import torch
from PIL import Image

from training.data.preprocess import decode_many
from training.devices import prepare, resolve_device
from training.fitting.config import make_config
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model, normalizer_for
from training.scoring.files import GPU_BATCH, score_files_multi
from training.scoring.inference import fold_batchnorm, predict_outputs

# The cores this process may run on: a container's share, where os.cpu_count() sees the host's.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
KEEP_DECODED = 4096  # decoded images kept for the inference-alone measurement
START_TIMEOUT_S = 300.0  # spawned workers import torch and start CUDA before the barrier


# --- synthesised files -----------------------------------------------------------------------


def _one_copy(src: Path, dst: Path, copy_no: int, deadline: float) -> bool:
    """Write one file; True when it was re-encoded (JPEG quality 90-95 and one edge 1 px
    shorter, by copy number), False for a byte copy once the box is spent. Byte copies rather
    than hard links: each file its own inode, so no two paths share page-cache pages."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if time.monotonic() > deadline:
        shutil.copyfile(src, dst)
        return False
    with Image.open(src) as img:
        img.load()
        w, h = img.size
        side = copy_no % 4
        box = (int(side == 0), int(side == 1), w - int(side == 2), h - int(side == 3))
        out = img.crop(box)
        if out.mode not in ("L", "RGB"):
            out = out.convert("RGB")
        out.save(dst, "JPEG", quality=90 + copy_no % 6)
    return True


def synthesise(sources: Sequence[Path], dest: Path, n: int, box_s: float) -> tuple[list[str], str]:
    """n files under dest, copies of the sources round robin (class folders kept); the paths
    and a note saying how they were made."""
    deadline = time.monotonic() + box_s
    jobs = []
    for i in range(n):
        src = sources[i % len(sources)]
        copy_no = i // len(sources)
        jobs.append((src, dest / f"copy{copy_no:04d}" / src.parent.name / src.name, copy_no))
    start = time.monotonic()
    with ThreadPoolExecutor(CORES) as pool:  # PIL releases the GIL while coding JPEG
        encoded = sum(pool.map(lambda j: _one_copy(*j, deadline), jobs))
    note = (
        f"{n:,} files from {len(sources)} full-resolution X-rays in {time.monotonic() - start:.0f}"
        f" s: {encoded:,} re-encoded (JPEG quality 90-95, one edge cropped by 1 px), "
        f"{n - encoded:,} byte copies after the {box_s:.0f} s re-encoding box; all just "
        "written, so read from the page cache"
    )
    return [str(d) for _, d, _ in jobs], note


# --- measurements ----------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    where: str
    files: int
    seconds: float
    peak: str

    @property
    def rate(self) -> float:
        return self.files / self.seconds


def scoring_bundle(device: torch.device) -> ModelBundle:
    """GoogLeNet@64 as the default preset serves it (crop, kind head), freshly initialised
    (speed does not depend on the weights), batch norms folded, on the device."""
    config = make_config("googlenet")
    torch.manual_seed(0)
    model = create_model("googlenet", config.img_size, False, config.kind_head).eval()
    model = fold_batchnorm(model).to(device, memory_format=torch.channels_last)
    return ModelBundle(
        model, "googlenet", config.img_size, normalizer_for("googlenet"), 0.5,
        config.to_dict(), equalize=config.equalize, crop=config.crop, kind_head=config.kind_head,
    )  # fmt: skip


def _sync_peak(device: torch.device, reset: bool = False) -> str:
    if device.type != "cuda":
        return "n/a (CPU)"
    torch.cuda.synchronize(device)
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
        return ""
    return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f}"


def decode_alone(
    bundle: ModelBundle, paths: Sequence[str], box_s: float, device: torch.device
) -> tuple[Measured, torch.Tensor]:
    """decode_many on every core, chunk after chunk until the files or the box run out; also
    the first KEEP_DECODED images, for the inference-alone measurement."""
    chunk, done, kept = max(256, 32 * CORES), 0, []
    start = time.perf_counter()
    while done < len(paths) and time.perf_counter() - start < box_s:
        batch = decode_many(paths[done : done + chunk], bundle.img_size, CORES, crop=bundle.crop)
        if sum(t.shape[0] for t in kept) < KEEP_DECODED:
            kept.append(batch.tensor)
        done += len(batch.ok_index) + len(batch.errors)
    seconds = time.perf_counter() - start
    name = f"decode alone (`decode_many`, {CORES} threads)"
    no_gpu_work = "n/a (CPU work)" if device.type == "cuda" else "n/a (CPU)"
    measured = Measured(name, "cpu", done, seconds, no_gpu_work)
    return measured, torch.cat(kept)[:KEEP_DECODED]


def inference_alone(bundle: ModelBundle, images: torch.Tensor, box_s: float) -> Measured:
    """predict_outputs over uint8 batches already on the model's device, pass after pass while
    the box lasts (at least one pass after a warm-up)."""
    device = bundle.model_device
    images = images.to(device)
    predict_outputs(bundle.model, images[: 2 * GPU_BATCH], bundle.normalizer, GPU_BATCH)
    _sync_peak(device, reset=True)
    start, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - start < box_s:
        # predict_outputs hands back CPU tensors: each batch is waited for, as scoring does
        predict_outputs(bundle.model, images, bundle.normalizer, GPU_BATCH)
        done += images.shape[0]
    seconds = time.perf_counter() - start
    name = f"inference alone (device-resident uint8 batches of {GPU_BATCH}, `predict_outputs`)"
    return Measured(name, str(device), done, seconds, _sync_peak(device))


def warm_up_files(paths: Sequence[str]) -> list[str]:
    """One full batch of files (repeated if there are fewer): the first call at a batch
    shape pays for oneDNN's or cuDNN's set-up, which a measurement should not."""
    return [paths[i % len(paths)] for i in range(GPU_BATCH)]


def end_to_end(
    bundle: ModelBundle, paths: Sequence[str], box_s: float, name: str, rate_guess: float = 0.0
) -> Measured:
    """score_files_multi on as many files as the box should hold: sized from rate_guess, or
    from the timed warm-up when there is none."""
    device = bundle.model_device
    warm = warm_up_files(paths)
    start = time.perf_counter()
    score_files_multi([bundle], warm)
    rate = rate_guess or len(warm) / (time.perf_counter() - start)
    n = min(len(paths), max(64, int(rate * box_s)))
    _sync_peak(device, reset=True)
    start = time.perf_counter()
    score_files_multi([bundle], paths[:n])
    seconds = time.perf_counter() - start
    return Measured(name, str(device), n, seconds, _sync_peak(device))


# --- worker processes ------------------------------------------------------------------------


def _worker(spec: str, paths: list[str], threads: int, barrier, results) -> None:  # noqa: ANN001
    """One spawned scoring process: build, warm up, wait for the others, score its share, put
    (the monotonic clock at its end, its peak GPU bytes or None) or ("error", why)."""
    try:
        torch.set_num_threads(threads)
        device = resolve_device(spec)
        prepare(device)
        bundle = scoring_bundle(device)
        score_files_multi([bundle], warm_up_files(paths))
        barrier.wait(START_TIMEOUT_S)
        score_files_multi([bundle], paths)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        results.put((time.monotonic(), peak))
    except BaseException as exc:
        barrier.abort()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def workers(spec: str, paths: list[str], n: int) -> tuple[float, str, int]:
    """(seconds from all n processes ready to the last done, the largest GPU peak of one
    process, torch threads each): n spawned processes, each its share of paths."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n + 1), ctx.Queue()
    threads = max(1, CORES // n)
    procs = [
        ctx.Process(target=_worker, args=(spec, paths[i::n], threads, barrier, results))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(START_TIMEOUT_S)
        start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on Linux
        ends = [results.get(timeout=START_TIMEOUT_S) for _ in procs]
    except (BrokenBarrierError, queue.Empty):
        try:
            ends = [results.get(timeout=10)]
        except queue.Empty:
            ends = [("error", "a worker process died without a word")]
    finally:
        for p in procs:
            p.join(timeout=60)
    errors = [e[1] for e in ends if e[0] == "error"]
    if errors:
        raise RuntimeError(errors[0])
    peaks = [e[1] for e in ends if e[1] is not None]
    peak = f"{max(peaks) / 2**20:,.0f}" if peaks else "n/a (CPU)"
    return max(e[0] for e in ends) - start, peak, threads


# --- the sections, as markdown ---------------------------------------------------------------


def agreement(gpu: ModelBundle, cpu: ModelBundle, paths: Sequence[str]) -> str:
    """The GPU's P against the CPU's on the same files, with torch's default TF32 settings as
    a worker runs. The model is untrained, so its P bunch together: calls are cut at the
    CPU's median P, which makes half of them PNEUMONIA and a disagreement possible."""
    on_gpu = score_files_multi([gpu], paths).probs[0]
    on_cpu = score_files_multi([cpu], paths).probs[0]
    ok = torch.isfinite(on_cpu) & torch.isfinite(on_gpu)
    cut = on_cpu[ok].median()
    agree = ((on_gpu[ok] >= cut) == (on_cpu[ok] >= cut)).double().mean()
    worst = (on_gpu[ok] - on_cpu[ok]).abs().max()
    return (
        f"GPU vs CPU on {int(ok.sum()):,} files (TF32 as torch defaults it: cuDNN on, matmul "
        f"off): calls agree on {agree:.2%} at the median P; largest |ΔP| {worst:.2e}."
    )


def scoring_table(bundle: ModelBundle, rows: list[Measured]) -> list[str]:
    lines = [
        f"| {bundle.arch}@{bundle.img_size}, default preset (crop {bundle.crop}, kind head "
        f"{bundle.kind_head}) | on | files | seconds | images/s | GPU peak MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.where} | {r.files:,} | {r.seconds:.2f} | {r.rate:,.0f} | {r.peak} |"
        )
    return lines


def scoring_section(
    args: argparse.Namespace, device: torch.device, paths: list[str], report: Callable
) -> Measured:
    bundle = scoring_bundle(device)
    box = args.score_box_s
    decoded, images = decode_alone(bundle, paths, box, device)
    inferred = inference_alone(bundle, images, box)
    floor = min(decoded.rate, inferred.rate)
    e2e = end_to_end(bundle, paths, box, "end to end (`score_files_multi`)", floor)
    rows = [decoded, inferred, e2e]
    if device.type == "cuda":  # the same call on this machine's CPU, for the ratio
        cpu = replace(bundle, model=copy.deepcopy(bundle.model).to("cpu"))
        name = f"end to end on the CPU (same call, {torch.get_num_threads()} torch threads)"
        rows.append(end_to_end(cpu, paths, box, name))
    report(*scoring_table(bundle, rows), "")
    report(
        f"End to end runs at {e2e.rate / floor:.0%} of min(decode alone, inference alone) "
        f"= {floor:,.0f} images/s (measured above)."
    )
    if device.type == "cuda":
        report(f"End to end on {device}: {e2e.rate / rows[3].rate:.1f}x the same call on the CPU.")
        report(agreement(bundle, cpu, paths[: min(len(paths), 1024)]))
    report(
        f"Each measurement stops after its {box:.1f} s box (end to end: as many files as the "
        "box should hold at the rate above it). The model has no review statistics (a trained "
        "one's add their cost). GPU peak: torch.cuda.max_memory_allocated while it ran, model "
        "weights included.",
        "",
    )
    return e2e


def workers_section(
    args: argparse.Namespace, device: torch.device, paths: list[str], rate: float, report: Callable
) -> None:
    n_files = min(len(paths), max(64 * max(args.workers), int(rate * args.workers_box_s)))
    files = paths[:n_files]
    report(
        f"| worker processes on {device} | torch threads each | files | seconds (all ready "
        f"-> last done) | aggregate images/s | x the {args.workers[0]}-process row | GPU peak MiB "
        "(largest process) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    )
    first = None
    for n in args.workers:
        print(f"scoring with {n} worker processes...", file=sys.stderr, flush=True)
        try:
            seconds, peak, threads = workers(str(device), files, n)
        except (RuntimeError, OSError) as exc:
            report(f"| {n} | | {n_files:,} | failed: {exc} | | | |")
            continue
        first = first or n_files / seconds
        report(
            f"| {n} | {threads} | {n_files:,} | {seconds:.2f} | {n_files / seconds:,.0f} | "
            f"{n_files / seconds / first:.2f} | {peak} |"
        )
    report("")
    report(
        f"Spawned processes, each `score_files_multi` on its share (files[i::N]) of the same "
        f"{n_files:,} files (as many as {args.workers_box_s:.1f} s should hold at one "
        "process's rate above); timed from a barrier that all pass once built and warmed up, "
        "to the last one done. CUDA contexts are not in the peak.",
        "",
    )


def guarded(report: Callable, section: str, work: Callable[[], float | None]) -> float | None:
    """work(), timed; a failure is a line of the report, not the end of a scarce GPU run."""
    t = time.monotonic()
    try:
        value = work()
    except Exception as exc:
        value = None
        report(f"{section} failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
    report(f"{section} section: {time.monotonic() - t:.0f} s.", "")
    return value


def run(args: argparse.Namespace, device: torch.device, tmp: Path, report: Callable) -> None:
    """Sections 2-4: synthesise the files, then scoring alone and with worker processes."""
    sources = sorted((args.data / "fullres").rglob("*.jpeg"))
    if not sources:
        raise SystemExit(f"no full-resolution images under {args.data / 'fullres'}")
    print(f"synthesising {args.files:,} files...", file=sys.stderr, flush=True)
    paths, note = synthesise(sources, tmp / "files", args.files, args.synth_box_s)
    report(f"### Scoring {len(paths):,} synthesised files", "", f"Files: {note}.", "")
    rate = guarded(report, "Scoring", lambda: scoring_section(args, device, paths, report).rate)
    report(f"### Worker processes sharing {device}", "")
    guarded(
        report,
        "Workers (process start-up included)",
        lambda: workers_section(args, device, paths, rate or 0.0, report),
    )
