"""Queued vs embedded scoring: throughput with 1 and 2 workers, and the queue's cost per chunk.

    python -m benchmarks.queue_bench            # needs Redis and PostgreSQL on 127.0.0.1

Everything runs in one invocation on the same folder (the 150 full-resolution X-rays linked
seven times: 1,050 files) with the same GoogLeNet@64 model row, so the ratios hold on a noisy
machine. Worker start-up is excluded: workers are started and pinged before the clock starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    ROOT,
    machine,
    repeated_fullres,
    scratch_postgres,
    store_untrained_model,
)
from cli.worker_cmd import worker_argv

REDIS = os.environ.get("CXRQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def _new_job(model_id: int, folder: Path, chunks: list[list[str]]) -> int:
    from worker.jobs import ScoreParams, create_score_job

    params = ScoreParams(str(folder), chunk_size=len(chunks[0]))
    return create_score_job(params, chunks, scorer=str(model_id)).id


def _wait_done(job_id: int, timeout: float = 1800) -> None:
    from db.schema import Job
    from db.session import session_scope

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as s:
            job = s.get(Job, job_id)
            if job.finished_at is not None:
                if job.state != "succeeded":
                    raise SystemExit(f"job {job_id} ended {job.state}: {job.message}")
                return
        time.sleep(0.05)
    raise SystemExit(f"job {job_id} did not finish in {timeout}s")


def embedded(model_id: int, folder: Path, chunk_size: int) -> tuple[float, int]:
    from worker.score_job import run_scoring_job
    from worker.score_plan import plan_chunks

    chunks = plan_chunks(folder, chunk_size)
    job_id = _new_job(model_id, folder, chunks)
    start = time.perf_counter()
    run_scoring_job(job_id)
    return time.perf_counter() - start, len(chunks)


def _start_workers(layout: list[tuple[int, int]], logs: Path) -> list[subprocess.Popen]:
    """One `cxrq worker` per (concurrency, torch threads) pair; returns once all answer a ping."""
    from worker.celery_app import app_for

    procs = []
    for i, (concurrency, threads) in enumerate(layout):
        env = {**os.environ, "CXRQ_TORCH_THREADS": str(threads)}
        cmd = worker_argv("score", concurrency, "WARNING")
        with open(logs / f"worker{i}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    deadline = time.monotonic() + 120
    while len(app_for().control.ping(timeout=1.0)) < len(layout):
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not start; see {logs}")
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def queued(model_id: int, folder: Path, chunk_size: int, layout, logs: Path) -> tuple[float, int]:
    from worker.dispatch import submit
    from worker.score_plan import plan_chunks

    procs = _start_workers(layout, logs)
    try:
        # Warm-up: every pool process loads the model once, outside the measurement.
        warm = plan_chunks(folder, 8)[: 2 * sum(c for c, _ in layout)]
        warm_job = _new_job(model_id, folder, warm)
        submit(warm_job, "score")
        _wait_done(warm_job)
        chunks = plan_chunks(folder, chunk_size)
        job_id = _new_job(model_id, folder, chunks)
        start = time.perf_counter()
        submit(job_id, "score")
        _wait_done(job_id)
        return time.perf_counter() - start, len(chunks)
    finally:
        _stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=7, help="x150 full-resolution files")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--small-chunk", type=int, default=8, help="for the per-chunk overhead")
    args = parser.parse_args()

    import redis

    redis.Redis.from_url(REDIS).flushdb()
    with scratch_postgres() as url:
        run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    os.environ.update(CXRQ_DATABASE_URL=url, CXRQ_BROKER_URL=REDIS)
    from db.migrate import upgrade
    from db.session import get_engine

    upgrade(get_engine(url, check_schema=False))
    tmp = Path(tempfile.mkdtemp(prefix="cxrq-bench-"))
    os.environ["CXRQ_CACHE_DIR"] = str(tmp / "cache")
    folder = repeated_fullres(tmp / "images", args.copies)
    n = 150 * args.copies
    model_id = store_untrained_model("googlenet", 64)
    embedded(model_id, folder, args.chunk_size)  # warm-up: file cache and model load

    cores = os.cpu_count() or 1
    rows = []
    t, k = embedded(model_id, folder, args.chunk_size)
    rows.append(("embedded (in the CLI process)", args.chunk_size, k, t))
    layouts = {
        f"queued, 1 worker x {cores} threads": [(1, cores)],
        f"queued, 2 workers x {max(1, cores // 2)} threads": [(1, max(1, cores // 2))] * 2,
    }
    for label, layout in layouts.items():
        t, k = queued(model_id, folder, args.chunk_size, layout, tmp)
        rows.append((label, args.chunk_size, k, t))
    te, ke = embedded(model_id, folder, args.small_chunk)
    tq, kq = queued(model_id, folder, args.small_chunk, [(1, cores)], tmp)
    rows += [
        ("embedded, small chunks", args.small_chunk, ke, te),
        (f"queued, 1 worker x {cores} threads, small chunks", args.small_chunk, kq, tq),
    ]

    print(f"machine: {machine()}\nfolder: {n} files (fullres x{args.copies}), GoogLeNet@64\n")
    print("| run | chunk | chunks | seconds | images/s |\n| --- | --- | --- | --- | --- |")
    for label, chunk, k, t in rows:
        print(f"| {label} | {chunk} | {k} | {t:.1f} | {n / t:.0f} |")
    print(
        f"\nqueue overhead per chunk: {(tq - te) / kq * 1000:.0f} ms "
        f"(({tq:.1f} s queued - {te:.1f} s embedded) / {kq} chunks of {args.small_chunk})"
    )


if __name__ == "__main__":
    main()
