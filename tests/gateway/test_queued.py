"""Queued mode: `cxrq listen` only receives and creates jobs; a real `cxrq worker` (Redis,
PostgreSQL) scores the study and, when the job closes, builds and sends its results to Orthanc
itself (the listener is stopped by then, so no one else can)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from db.schema import Job, OutboxItem
from db.session import session_scope
from gateway.intake import IntakeConfig
from gateway.listener import ListenConfig, Listener
from tests.conftest import make_xray
from tests.gateway.nodes import Orthanc, need_orthanc, send, twins
from tests.helpers import add_tiny_model
from tests.worker.conftest import Workers, queued  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def test_a_worker_scores_the_study_and_sends_its_sr_when_the_job_closes(
    queued: str,  # noqa: F811
    tiny_checkpoint: dict,
    tmp_path: Path,
) -> None:
    need_orthanc()
    pacs = Orthanc(tmp_path / "orthanc")
    pacs.folder.mkdir()
    pacs.start()
    workers = Workers(tmp_path)
    try:
        model_id = add_tiny_model(tiny_checkpoint)
        workers.start(queues="score")
        intake = IntakeConfig(str(model_id), None, (pacs.destination,), "none")
        listener = Listener(
            ListenConfig(tmp_path / "spool", host="127.0.0.1", port=0, intake=intake)
        )
        listener.start()
        sources = [make_xray(tmp_path / "src" / f"x{i}.png", i == 0, seed=i) for i in range(2)]
        paths = twins(sources, tmp_path / "twins")
        assert send(listener.port, paths) == [0, 0]
        time.sleep(1.0)  # the release closes the study: its job is created and queued
        listener.stop()
        study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}}
        deadline = time.monotonic() + 120
        while len(pacs.post("/tools/find", query)) != 2:
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.5)
        # The worker records "sent" just after the PACS answers, so the rows may lag a moment.
        while (states := _outbox_states()) != ["sent", "sent"] and time.monotonic() < deadline:
            time.sleep(0.2)
        with session_scope() as s:
            [job] = s.scalars(select(Job).where(Job.kind == "score")).all()
        assert job.state == "succeeded" and states == ["sent", "sent"], workers.logs()
    finally:
        workers.stop_all()
        pacs.stop()


def _outbox_states() -> list[str]:
    with session_scope() as s:
        return [i.state for i in s.scalars(select(OutboxItem))]


def test_a_job_created_but_never_queued_is_queued_when_the_listener_starts(
    queued: str,  # noqa: F811
    tiny_checkpoint: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The listener died between creating a study's job and sending its units."""
    from gateway import intake
    from gateway.spool import Spool
    from gateway.studies import Received

    model_id = add_tiny_model(tiny_checkpoint)
    spool = Spool(tmp_path / "spool", 10**9)
    [path] = twins([make_xray(tmp_path / "x.png", True, seed=3)], tmp_path / "twins")
    ds = pydicom.dcmread(path)
    copy = spool.tmp / "x.dcm"
    copy.write_bytes(path.read_bytes())
    kept = spool.keep(copy, ds.StudyInstanceUID, ds.SOPInstanceUID)
    item = Received(ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, "", kept, 1, "M")
    with monkeypatch.context() as patch:
        patch.setattr(intake.dispatch, "submit", lambda *_: None)  # the crash: nothing sent
        job_id = intake.submit_study(ds.StudyInstanceUID, [item], IntakeConfig(str(model_id)))
    workers = Workers(tmp_path)
    workers.start(queues="score")
    listener = Listener(ListenConfig(tmp_path / "spool", host="127.0.0.1", port=0))
    listener.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            with session_scope() as s:
                state = s.get(Job, job_id).state
            if state == "succeeded" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state == "succeeded", workers.logs()
    finally:
        listener.stop()
        workers.stop_all()
