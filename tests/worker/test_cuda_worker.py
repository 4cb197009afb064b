"""A real `cxrq worker` on a CUDA device scores and records the GPU on its units.

Skipped where no GPU is visible; they run on a lent GPU machine (BENCHMARKS.md, "GPU
workers")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tests.worker.conftest import queued  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_a_real_worker_on_the_gpu_scores_and_records_it(
    queued: str,  # noqa: F811
    tiny_checkpoint: dict,
    tmp_path: Path,
) -> None:
    from sqlalchemy import select

    from db.schema import Job, WorkUnit
    from db.session import session_scope
    from tests.helpers import add_tiny_model, incoming_folder, make_score_job
    from tests.worker.conftest import Workers
    from worker import dispatch

    workers = Workers(tmp_path)
    workers.start(queues="score", env={"CXRQ_DEVICE": "cuda:0"})
    try:
        job_id, _ = make_score_job(incoming_folder(tmp_path), add_tiny_model(tiny_checkpoint))
        dispatch.submit(job_id, "score")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope() as s:
                if s.get(Job, job_id).state == "succeeded":
                    break
            time.sleep(0.5)
        with session_scope() as s:
            assert s.get(Job, job_id).state == "succeeded", workers.logs()
            devices = {
                u.device for u in s.scalars(select(WorkUnit).where(WorkUnit.job_id == job_id))
            }
        assert devices == {"cuda:0"}
    finally:
        workers.stop_all()
