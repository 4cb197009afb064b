"""Queued-mode fixtures: real Redis and PostgreSQL, and real `cxrq worker` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.worker_cmd import worker_argv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def queued(broker_url: str, postgres_url: str) -> str:
    """Queued mode as deployed: Redis and a migrated PostgreSQL; returns the database URL."""
    from db.migrate import upgrade
    from db.session import get_engine

    upgrade(get_engine(postgres_url, check_schema=False))
    return postgres_url


class Workers:
    """Starts `cxrq worker` processes in their own process groups; stops them all at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(
        self, queues: str = "train,score", concurrency: int = 1, env: dict | None = None
    ) -> subprocess.Popen:
        log = open(self.log_dir / f"worker{len(self.procs)}.log", "w")  # noqa: SIM115
        cmd = worker_argv(queues, concurrency)
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal the worker and its pool children at once, like a machine that died."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    @staticmethod
    def children(proc: subprocess.Popen) -> list[int]:
        """The worker's pool processes."""
        path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.log_dir.glob("worker*.log")))


@pytest.fixture()
def workers(queued: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def wait_for(check: Callable[[], object], timeout: float, what: str, logs: Callable[[], str]):
    """Poll check() until it returns something truthy; else fail with the worker logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()}")
