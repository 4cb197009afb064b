"""The queue under faults, with default leases: every job ends in a final state with exactly one
row per image. Real PostgreSQL, a private Redis, real `cxrq worker` processes.

    pytest -m faults -s      # -s prints the measured recovery times
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from db.schema import Job, Model, Prediction, WorkUnit
from db.session import session_scope
from tests.conftest import make_xray
from tests.helpers import add_tiny_model, job_id_of, job_row, linked_fullres, run
from tests.worker.conftest import ROOT, wait_for
from tests.worker.faults import DatabaseProxy, PrivateRedis

pytestmark = pytest.mark.faults


@pytest.fixture()
def private_redis(request, queued, tmp_path, monkeypatch) -> PrivateRedis:
    """A Redis of the test's own (persistent when the test is parametrized so), as the broker,
    with every recovery setting at its default."""
    persistent = getattr(request, "param", False)
    redis = PrivateRedis(tmp_path, persistent=persistent)
    monkeypatch.setenv("CXRQ_BROKER_URL", redis.url)
    monkeypatch.delenv("CXRQ_LEASE_SECONDS", raising=False)
    monkeypatch.delenv("CXRQ_VISIBILITY_TIMEOUT", raising=False)
    yield redis
    redis.kill()


def _finished(job_id: int, timeout: float, logs) -> Job:  # noqa: ANN001
    return wait_for(lambda: (j := job_row(job_id)).finished_at and j, timeout, "the job", logs)


def assert_one_row_per_image(job_id: int, n_images: int) -> None:
    with session_scope() as s:
        count = s.scalar(select(func.count()).where(Prediction.job_id == job_id))
        distinct = s.scalar(
            select(func.count(func.distinct(Prediction.path))).where(Prediction.job_id == job_id)
        )
        lost = s.scalar(
            select(func.count()).where(
                Prediction.job_id == job_id, Prediction.error.like("not scored%")
            )
        )
    assert (count, distinct, lost) == (n_images, n_images, 0)


def test_racing_chunks_never_leave_a_job_running(
    workers, private_redis, tiny_checkpoint, tmp_path
) -> None:
    """Two workers x two processes, one image per chunk: chunks commit at the same moment."""
    model = str(add_tiny_model(tiny_checkpoint))
    folder = tmp_path / "eight"
    for i in range(8):
        make_xray(folder / f"x{i}.png", i % 2 == 0, i)
    workers.start(concurrency=2)
    workers.start(concurrency=2)
    jobs = [job_id_of(run("score", folder, "--model", model, "--chunk-size", 1)) for _ in range(12)]
    for job_id in jobs:
        job = _finished(job_id, 120, workers.logs)
        assert (job.state, job.progress_done, job.progress_total) == ("succeeded", 8, 8)
        assert_one_row_per_image(job_id, 8)


def _running_unit(job_id: int) -> tuple[int, str] | None:
    with session_scope() as s:
        row = s.execute(
            select(WorkUnit.id, WorkUnit.owner).where(
                WorkUnit.job_id == job_id, WorkUnit.state == "running"
            )
        ).first()
    return tuple(row) if row else None


def _holder_pid(owner: str) -> int:
    """The process id in a lease token ('host:pid/claim')."""
    return int(owner.split("/")[0].rsplit(":", 1)[1])


def _owner(unit_id: int) -> tuple[str, str | None]:
    with session_scope() as s:
        unit = s.get(WorkUnit, unit_id)
        return unit.state, unit.owner


N_IMAGES = 300  # the 150 full-resolution X-rays, twice, in chunks of 25


@pytest.fixture()
def submit_scoring(private_redis, tiny_checkpoint, shared_data, tmp_path):
    """Submits a job scoring N_IMAGES with a tiny model; returns its id."""
    model = str(add_tiny_model(tiny_checkpoint))
    folder = linked_fullres(shared_data, tmp_path / "many", copies=N_IMAGES // 150)
    return lambda: job_id_of(run("score", folder, "--model", model, "--chunk-size", 25))


def _started(job_id: int, workers) -> None:  # noqa: ANN001
    wait_for(lambda: job_row(job_id).progress_done > 0, 120, "scoring to start", workers.logs)


def _ends_whole(job_id: int, workers, fault: str, since: float) -> None:  # noqa: ANN001
    """The job succeeds with exactly one row per image; prints how long after the fault."""
    job = _finished(job_id, 300, workers.logs)
    print(f"\n{fault}: job ended {time.monotonic() - since:.1f} s later")
    assert job.state == "succeeded", job.message
    assert_one_row_per_image(job_id, N_IMAGES)


def test_a_killed_workers_chunk_is_back_within_a_minute(
    workers, private_redis, submit_scoring
) -> None:
    workers.start()
    workers.start()
    job_id = submit_scoring()
    unit_id, owner = wait_for(
        lambda: _running_unit(job_id), 120, "a chunk to be running", workers.logs
    )
    # Kill the worker that holds it, pool and all, with no warning.
    pid = _holder_pid(owner)
    victim = next(p for p in workers.procs if pid in (p.pid, *workers.children(p)))
    workers.kill(victim)
    killed_at = time.monotonic()
    wait_for(lambda: _owner(unit_id)[1] != owner, 90, "the chunk to be taken over", workers.logs)
    recovery = time.monotonic() - killed_at
    print(f"\nworker SIGKILL: its chunk was running again after {recovery:.1f} s")
    assert recovery <= 60
    _ends_whole(job_id, workers, "worker SIGKILL", killed_at)


def test_a_killed_pool_process_is_replaced_without_a_crash_loop(
    workers, private_redis, submit_scoring
) -> None:
    worker = workers.start(concurrency=2)
    job_id = submit_scoring()
    _started(job_id, workers)
    # The pool process that holds a chunk now, killed mid-chunk.
    unit_id, owner = wait_for(
        lambda: (
            (u := _running_unit(job_id)) and _holder_pid(u[1]) in workers.children(worker) and u
        ),
        60,
        "a pool process to hold a chunk",
        workers.logs,
    )
    os.kill(_holder_pid(owner), signal.SIGKILL)
    _ends_whole(job_id, workers, "pool process SIGKILL", time.monotonic())
    assert worker.poll() is None
    assert "Timed out waiting for UP message" not in workers.logs()


@pytest.mark.parametrize("private_redis", [False, True], indirect=True, ids=["empty", "aof"])
def test_a_redis_restart_loses_no_image(workers, private_redis, submit_scoring) -> None:
    workers.start()
    job_id = submit_scoring()
    _started(job_id, workers)
    private_redis.restart()  # SIGKILL; without persistence it comes back empty
    kind = "with AOF" if private_redis.persistent else "without persistence"
    _ends_whole(job_id, workers, f"Redis restart {kind}", time.monotonic())


def test_a_database_refusing_connections_for_a_minute_loses_no_image(
    workers, submit_scoring, queued
) -> None:
    proxy = DatabaseProxy(5432)
    through_proxy = queued.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    workers.start(env={"CXRQ_DATABASE_URL": through_proxy})
    workers.start(env={"CXRQ_DATABASE_URL": through_proxy})
    job_id = submit_scoring()
    _started(job_id, workers)
    proxy.refuse()  # every worker connection cut; new ones refused
    time.sleep(60)
    proxy.accept()
    _ends_whole(job_id, workers, "60 s database outage, after it", time.monotonic())
    proxy.refuse()


def test_cancel_ends_a_job_whose_worker_is_gone(workers, private_redis, submit_scoring) -> None:
    worker = workers.start()
    job_id = submit_scoring()
    _started(job_id, workers)
    workers.kill(worker)
    private_redis.restart()  # and its messages with it
    out = run("cancel", job_id)
    assert "cancel requested" in out
    wait_for(lambda: job_row(job_id).state == "cancelled", 60, "the cancel", workers.logs)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_an_interrupted_embedded_job_ends(sig, tiny_dataset, shared_data, tmp_path) -> None:
    """Ctrl-C: cancelled at once. SIGKILL (nothing runs to say so): failed once a lease passes
    with no sign of its process, as the next `cxrq status` sees."""
    env = {
        **os.environ,
        "CXRQ_DATABASE_URL": f"sqlite:///{tmp_path / 'cxrq.db'}",
        "CXRQ_CACHE_DIR": str(tmp_path / "cache"),
        "CXRQ_LEASE_SECONDS": "3",
    }
    env.pop("CXRQ_BROKER_URL", None)
    cxrq = [sys.executable, "-c", "from cli.main import cli; cli()"]
    train = [*cxrq, "train", "--arch", "cnn", "--data", str(tiny_dataset), "--epochs", "1"]
    subprocess.run([*train, "--img-size", "32"], cwd=ROOT, env=env, check=True)
    folder = linked_fullres(shared_data, tmp_path / "many", copies=2)
    score = subprocess.Popen(
        [*cxrq, "score", str(folder), "--model", "cnn", "--chunk-size", "10"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: a suite started in the background (`make test &`) inherits SIGINT
        # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    db = env["CXRQ_DATABASE_URL"]
    wait_for(lambda: _embedded_job(db)[1] > 0, 120, "scoring to start", lambda: "")
    score.send_signal(sig)
    output, _ = score.communicate(timeout=60)
    assert score.returncode != 0 and "Traceback" not in output, output
    if sig == signal.SIGKILL:
        time.sleep(7)  # its last lease (3 s) runs out, then a lease of silence
        status = subprocess.run(
            [*cxrq, "status", "latest"], cwd=ROOT, env=env, text=True, capture_output=True
        )
        assert "failed" in status.stdout and "process running it stopped" in status.stdout
    state, done = _embedded_job(db)
    assert state == ("cancelled" if sig == signal.SIGINT else "failed") and 0 < done < 300


def _embedded_job(url: str) -> tuple[str, int]:
    with session_scope(url) as s:
        job = s.scalars(select(Job).where(Job.kind == "score")).first()
        return (job.state, job.progress_done) if job else ("none", 0)


def _models() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Model))


def test_a_killed_training_restarts_once_and_a_live_one_never_twice(
    workers, private_redis, tiny_dataset, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CXRQ_LEASE_SECONDS", "2")  # the mechanism, not the default timing
    first, second = workers.start(), workers.start()
    args = ["--arch", "cnn", "--data", tiny_dataset, "--img-size", 32, "--epochs", 600]
    job_id = job_id_of(run("train", *args))
    unit_id, owner = wait_for(
        lambda: _running_unit(job_id), 120, "the training to start", workers.logs
    )
    time.sleep(3 * 2)  # three leases: the reapers must leave a live training alone
    assert _owner(unit_id) == ("running", owner)
    pid = _holder_pid(owner)
    victim = next(p for p in (first, second) if pid in (p.pid, *workers.children(p)))
    workers.kill(victim)
    killed_at = time.monotonic()
    wait_for(lambda: _owner(unit_id)[1] != owner, 90, "the training to restart", workers.logs)
    print(
        f"\ntraining worker SIGKILL: training restarted after {time.monotonic() - killed_at:.1f} s"
    )
    job = _finished(job_id, 600, workers.logs)
    assert job.state == "succeeded", job.message
    assert _models() == 1
