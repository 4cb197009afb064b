"""Queued mode end to end: real Redis, real PostgreSQL, real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.schema import Heatmap, Prediction
from db.session import session_scope
from tests.conftest import add_model_row, make_xray
from tests.helpers import add_tiny_model, job_id_of, job_row, linked_fullres, run
from tests.worker.conftest import wait_for
from worker.jobs import ScoreParams, create_score_job
from worker.score_job import run_scoring_job
from worker.score_plan import plan_folder


def _rows(job_id: int) -> dict[str, tuple]:
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
    return {
        Path(r.path).name: (
            r.prob,
            r.prob_viral,
            r.confidence,
            r.label,
            r.kind,
            r.true_label,
            r.error,
            r.review_reasons,
        )
        for r in rows
    }


def _labelled_folder(root: Path, n: int = 10) -> Path:
    for i in range(n):
        make_xray(root / "NORMAL" / f"n{i}.jpeg", False, i)
        make_xray(root / "PNEUMONIA" / f"p{i}.jpeg", True, 100 + i)
    (root / "NORMAL" / "broken.jpeg").write_bytes(b"not a jpeg")
    return root


def test_two_workers_train_and_score_like_embedded(workers, tiny_dataset, tmp_path) -> None:
    workers.start()
    workers.start()
    out = run(
        "train", "--arch", "cnn", "--data", tiny_dataset, "--epochs", 1, "--img-size", 32, "--wait"
    )
    assert "queued" in out and "validation: F1" in out, out + workers.logs()
    folder = _labelled_folder(tmp_path / "scan")
    out = run("score", folder, "--chunk-size", 3, "--explain", "--wait")
    queued_job = job_id_of(out)
    assert "queued 7 chunks" in out and f"job {queued_job} succeeded" in out
    job = job_row(queued_job)
    assert job.progress_done == job.progress_total == 21
    with session_scope() as s:  # workers stored a map for every readable image
        maps = s.scalars(select(Heatmap.path).where(Heatmap.job_id == queued_job)).all()
    assert len(maps) == 20 and all("broken" not in p for p in maps)

    # the same model, scored in this process
    chunks, unreadable = plan_folder(folder, 5)
    embedded_job = create_score_job(
        ScoreParams(str(folder)), chunks, str(job.model_id), unreadable
    ).id
    run_scoring_job(embedded_job)
    queued_rows, embedded_rows = _rows(queued_job), _rows(embedded_job)
    assert queued_rows.keys() == embedded_rows.keys()
    for name, (prob, viral, confidence, *rest) in queued_rows.items():  # float noise: shapes
        assert rest == list(embedded_rows[name][3:])
        assert prob == pytest.approx(embedded_rows[name][0], abs=1e-5)
        assert viral == pytest.approx(embedded_rows[name][1], abs=1e-5) if viral else not rest[1]
        # workers stored the review too; the broken file has none
        assert (confidence is None) == (name == "broken.jpeg")
        assert confidence == pytest.approx(embedded_rows[name][2], abs=1e-5)
    assert "score succeeded 21/21" in run("status", queued_job)
    run("report", "html", queued_job, "-o", tmp_path / "queued.html")  # a page from the server
    page = (tmp_path / "queued.html").read_text()
    assert page.count('"path": ') == 20 and "broken.jpeg" in page  # 20 images, 1 error row


def test_a_killed_worker_loses_nothing_and_doubles_nothing(
    workers, tiny_checkpoint, shared_data, tmp_path
) -> None:
    model = str(add_tiny_model(tiny_checkpoint))
    folder = linked_fullres(shared_data, tmp_path / "many")
    first = workers.start()
    job_id = job_id_of(run("score", folder, "--model", model, "--chunk-size", 50))
    wait_for(lambda: 0 < job_row(job_id).progress_done < 600, 120, "scoring to start", workers.logs)
    workers.kill(first)  # SIGKILL, worker and pool process: its chunk stays unacknowledged
    done_at_kill = job_row(job_id).progress_done
    workers.start()
    job = wait_for(lambda: (j := job_row(job_id)).finished_at and j, 180, "the job", workers.logs)
    assert job.state == "succeeded", job.message
    assert done_at_kill < 1050
    with session_scope() as s:
        count = s.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.job_id == job_id)
        )
        distinct = s.scalar(
            select(func.count(func.distinct(Prediction.path))).where(Prediction.job_id == job_id)
        )
    assert count == distinct == 1050


def test_cancel_stops_a_queued_scoring_job(workers, tiny_checkpoint, shared_data, tmp_path) -> None:
    model = str(add_tiny_model(tiny_checkpoint))
    folder = linked_fullres(shared_data, tmp_path / "many")
    workers.start()
    job_id = job_id_of(run("score", folder, "--model", model, "--chunk-size", 50))
    wait_for(lambda: job_row(job_id).progress_done > 0, 120, "scoring to start", workers.logs)
    assert "cancel requested" in run("cancel", job_id)
    job = wait_for(lambda: (j := job_row(job_id)).finished_at and j, 60, "the cancel", workers.logs)
    assert job.state == "cancelled" and job.progress_done < 1050
    assert "already cancelled" in run("cancel", job_id)
    assert "cancelled" in run("status", job_id, ok=True)


def test_a_chunk_that_keeps_failing_is_retried_then_recorded(workers, tmp_path) -> None:
    add_model_row(b"garbage", "broken", "cnn")  # weights that are not a checkpoint
    folder = _labelled_folder(tmp_path / "scan", n=2)
    workers.start()
    out = run("score", folder, "--model", "broken", "--chunk-size", 2, "--wait", ok=False)
    job_id = job_id_of(out)
    job = job_row(job_id)
    assert job.state == "partial" and "5 not scored" in job.message, out + workers.logs()
    assert workers.logs().count("Retry in") >= 3  # three retries with back-off, then recorded


def test_wait_with_no_worker_stops_with_one_line(
    queued, tiny_checkpoint, tmp_path, monkeypatch
) -> None:
    model = str(add_tiny_model(tiny_checkpoint))
    monkeypatch.setattr("cli.follow.STALL_S", 2.0)
    folder = _labelled_folder(tmp_path / "scan", n=2)
    out = run("score", folder, "--model", model, "--wait", ok=False)
    last = out.strip().splitlines()[-1]
    assert "no worker answers" in last and "start one with `cxrq worker`" in last, out
    assert job_row(job_id_of(out)).state == "pending"  # still queued for a worker to come
