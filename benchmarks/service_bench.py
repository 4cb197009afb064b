"""CLI start-up, scoring-worker memory with four models and an ensemble, bulk row writes.

    python -m benchmarks.service_bench          # PostgreSQL on 127.0.0.1 for the write test

- start-up: wall time of `cxrq --help` and `cxrq report models` (median of 5, fresh processes),
  beside a bare `python -c pass`.
- memory: peak RSS of one process that loads GoogLeNet, ResNet50, CNN and MLP (64 px) and scores
  the 150 full-resolution X-rays with their ensemble (every member's rows and the combined ones).
- writes: prediction rows per second into PostgreSQL and SQLite through cxrq's upsert, beside a
  plain ORM loop (session.add per row, one commit).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, SHARED, machine, scratch_postgres, store_untrained_model

CXRQ = [sys.executable, "-c", "from cli.main import cli; cli()"]


def _median_seconds(cmd: list[str], env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(db_url: str) -> list[tuple[str, float]]:
    env = {**os.environ, "CXRQ_DATABASE_URL": db_url}
    subprocess.run([*CXRQ, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    return [
        ("python -c pass", _median_seconds([sys.executable, "-c", "pass"], env)),
        ("cxrq --help", _median_seconds([*CXRQ, "--help"], env)),
        ("cxrq report models", _median_seconds([*CXRQ, "report", "models"], env)),
    ]


def memory_child() -> None:
    """Runs in its own process: load four models and score with their ensemble."""
    from db.schema import Ensemble
    from db.session import session_scope
    from worker.jobs import ScoreParams, create_score_job
    from worker.score_job import run_scoring_job
    from worker.score_plan import DEFAULT_CHUNK_SIZE, plan_chunks

    ids = [store_untrained_model(a) for a in ("googlenet", "resnet50", "cnn", "mlp")]
    with session_scope() as s:
        e = Ensemble(
            name="all",
            method="vote",
            params={},
            members=[{"model_id": i, "weight": 1.0} for i in ids],
        )
        s.add(e)
    folder = SHARED / "fullres"
    params = ScoreParams(str(folder), chunk_size=DEFAULT_CHUNK_SIZE)
    job = create_score_job(params, plan_chunks(folder), scorer="ensemble:all")
    result = run_scoring_job(job.id)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{peak_mb:.0f} {result['state']}")


def memory(db_url: str) -> float:
    env = {**os.environ, "CXRQ_DATABASE_URL": db_url}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.service_bench", "--memory-child"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    peak, state = out.stdout.split()
    assert state == "succeeded", out.stdout
    return float(peak)


def _rows(job_id: int, n: int) -> list[dict]:
    return [
        {
            "job_id": job_id,
            "scorer": "model:1",
            "model_id": 1,
            "ensemble_id": None,
            "path": f"/x/{i}.jpeg",
            "prob": i / n,
            "label": "NORMAL",
            "true_label": None,
            "error": None,
        }
        for i in range(n)
    ]


def writes(db_url: str, n: int = 20000) -> tuple[float, float]:
    """(cxrq upsert rows/s, plain ORM rows/s)."""
    from db.migrate import upgrade
    from db.schema import Prediction
    from db.session import dispose_engines, get_engine, session_scope
    from db.store import create_job, upsert_predictions

    dispose_engines()
    os.environ["CXRQ_DATABASE_URL"] = db_url
    upgrade(get_engine(db_url, check_schema=False))
    store_untrained_model("mlp")
    with session_scope() as s:
        fast_job, orm_job = create_job(s, "score", {}).id, create_job(s, "score", {}).id
    start = time.perf_counter()
    with session_scope() as s:
        upsert_predictions(s, _rows(fast_job, n))
    fast = n / (time.perf_counter() - start)
    start = time.perf_counter()
    with session_scope() as s:
        for row in _rows(orm_job, n):
            s.add(Prediction(**row))
    return fast, n / (time.perf_counter() - start)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cxrq-service-bench-"))
    os.environ["CXRQ_CACHE_DIR"] = str(tmp / "cache")
    print(f"machine: {machine()}\n")
    print("| what | result |\n| --- | --- |")
    for label, seconds in startup(f"sqlite:///{tmp / 'startup.db'}"):
        print(f"| {label} | {seconds * 1000:.0f} ms |", flush=True)
    peak = memory(f"sqlite:///{tmp / 'memory.db'}")
    print(f"| peak RSS, four models + ensemble scoring 150 full-size X-rays | {peak:.0f} MB |")
    with scratch_postgres() as pg_url:
        print_writes("PostgreSQL", pg_url)
    print_writes("SQLite", f"sqlite:///{tmp / 'writes.db'}")


def print_writes(label: str, url: str) -> None:
    fast, orm = writes(url)
    print(
        f"| {label}: cxrq upsert / plain ORM | {fast:,.0f} / {orm:,.0f} rows/s "
        f"({fast / orm:.1f}x) |",
        flush=True,
    )


if __name__ == "__main__":
    if "--memory-child" in sys.argv:
        memory_child()
    else:
        main()
