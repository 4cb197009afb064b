"""`cxrq listen`'s receiver in this process (embedded mode, SQLite): what it negotiates, what it
answers, that what it acknowledged is spooled and scored once, and that no patient is logged."""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from db.schema import DicomInstance, Job, Prediction
from db.session import session_scope
from gateway.intake import IntakeConfig
from gateway.listener import ListenConfig, Listener
from gateway.receiver import ReceiverLimits
from tests.conftest import make_xray
from tests.gateway.nodes import send, twins
from tests.helpers import add_tiny_model


@pytest.fixture()
def sources(tmp_path: Path) -> list[Path]:
    return [make_xray(tmp_path / "src" / f"x{i}.png", i % 2 == 0, seed=i) for i in range(3)]


@pytest.fixture()
def start(db_url: str, tiny_checkpoint: dict, tmp_path: Path):
    """start(**ListenConfig fields) -> a running listener on a free port; all stopped after."""
    model_id = add_tiny_model(tiny_checkpoint)
    running = []

    def start_one(**fields) -> Listener:
        fields.setdefault("intake", IntakeConfig(model=str(model_id)))
        if "destinations" in fields:  # a shorthand: sending there, SRs only
            destinations = fields.pop("destinations")
            fields["intake"] = IntakeConfig(fields["intake"].model, None, destinations, "none")
        config = ListenConfig(tmp_path / "spool", host="127.0.0.1", port=0, **fields)
        listener = Listener(config)
        listener.start()
        running.append(listener)
        return listener

    yield start_one
    for listener in running:
        listener.stop()


def wait_for_jobs(n: int, timeout: float = 60) -> list[Job]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as s:
            jobs = list(s.scalars(select(Job).where(Job.kind == "score")))
            if len(jobs) >= n and all(j.state in ("succeeded", "partial", "failed") for j in jobs):
                return jobs
        time.sleep(0.2)
    raise AssertionError(f"{n} score job(s) did not finish in {timeout} s")


def test_an_echo_is_answered(start) -> None:
    from pynetdicom import AE

    listener = start()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="CXRQ")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_a_study_becomes_one_job_with_its_uids_and_a_row_per_instance(
    start, sources, tmp_path
) -> None:
    listener = start()
    paths = twins(sources, tmp_path / "twins")
    assert send(listener.port, paths) == [0, 0, 0]
    [job] = wait_for_jobs(1)
    sent = [pydicom.dcmread(p) for p in paths]
    assert job.state == "succeeded", job.message
    dicom = job.params["dicom"]
    assert dicom["study_instance_uid"] == sent[0].StudyInstanceUID
    assert dicom["series_instance_uids"] == [sent[0].SeriesInstanceUID]
    assert sorted(dicom["sop_instance_uids"]) == sorted(ds.SOPInstanceUID for ds in sent)
    assert dicom["calling_ae"] == ["MODALITY"]
    with session_scope() as s:
        rows = s.scalars(select(Prediction).where(Prediction.job_id == job.id)).all()
        kept = s.scalars(select(DicomInstance)).all()
    assert sorted(r.sop_instance_uid for r in rows) == sorted(dicom["sop_instance_uids"])
    assert all(r.prob is not None and r.error is None for r in rows)
    assert {k.job_id for k in kept} == {job.id} and len(kept) == 3
    assert all(Path(k.path).is_file() for k in kept)


def test_a_resent_instance_is_scored_once(start, sources, tmp_path) -> None:
    listener = start()
    paths = twins(sources[:1], tmp_path / "twins")
    assert send(listener.port, paths) == [0]
    wait_for_jobs(1)
    assert send(listener.port, paths) == [0]  # success: the instance is held
    time.sleep(2)
    with session_scope() as s:
        assert len(s.scalars(select(Job)).all()) == 1
        assert len(s.scalars(select(Prediction)).all()) == 1


def test_an_instance_without_its_uids_fails_0xA900_and_leaves_nothing(
    start, sources, tmp_path
) -> None:
    listener = start()
    [path] = twins(sources[:1], tmp_path / "twins")
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    ds.save_as(path)
    assert send(listener.port, [path]) == [0xA900]
    time.sleep(1.5)
    assert list(listener.spool.files()) == []
    with session_scope() as s:
        assert s.scalars(select(Job)).all() == []


def test_a_full_spool_answers_out_of_resources_never_success(start, sources, tmp_path) -> None:
    listener = start(spool_max_bytes=1000)
    paths = twins(sources[:1], tmp_path / "twins")
    assert send(listener.port, paths) == [0xA700]
    assert list(listener.spool.files()) == []


def test_a_full_disk_answers_out_of_resources(start, sources, tmp_path, monkeypatch) -> None:
    listener = start()
    paths = twins(sources[:1], tmp_path / "twins")

    def no_space(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    assert send(listener.port, paths) == [0xA700]


def test_other_sop_classes_are_not_negotiated(start, sources, tmp_path) -> None:
    listener = start()
    chest, other = twins(sources[:2], tmp_path / "twins")
    ds = pydicom.dcmread(other)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT
    ds.save_as(other)
    assert send(listener.port, [chest, other]) == [0, "not negotiated"]
    assert send(listener.port, [other]) == ["rejected"]  # no context left to agree on


def test_a_calling_ae_not_allowed_is_rejected(start, sources, tmp_path) -> None:
    listener = start(limits=ReceiverLimits(allow=("XRAY1",)))
    paths = twins(sources[:1], tmp_path / "twins")
    assert send(listener.port, paths, calling="INTRUDER") == ["rejected"]
    assert send(listener.port, paths, calling="XRAY1") == [0]


def test_a_restart_scores_what_was_spooled_and_not_taken(start, sources, tmp_path) -> None:
    """A study still open when the listener stopped: its files are in the spool, with no job."""
    from gateway.spool import Spool

    spool = Spool(tmp_path / "spool", 10**9)
    for path in twins(sources, tmp_path / "twins"):
        ds = pydicom.dcmread(path)
        copy = spool.tmp / path.name
        copy.write_bytes(path.read_bytes())
        spool.keep(copy, ds.StudyInstanceUID, ds.SOPInstanceUID)
    (spool.tmp / "half-received.dcm").write_bytes(b"\0" * 10)  # never acknowledged
    start()
    [job] = wait_for_jobs(1)
    assert job.state == "succeeded" and job.progress_total == 3
    assert not (spool.tmp / "half-received.dcm").exists()


def test_no_patient_data_in_any_log_line_or_table(start, sources, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    listener = start()
    paths = twins(sources, tmp_path / "twins", patient_name="Secret^Person", patient_id="MRN-77")
    send(listener.port, paths)
    wait_for_jobs(1)
    text = caplog.text
    assert "kept instance" in text  # the log is there, and names UIDs
    assert "Secret" not in text and "MRN-77" not in text and "20200101" not in text
    from db.schema import Base

    with session_scope() as s:  # every table, every row, every column
        for table in Base.metadata.sorted_tables:
            for row in s.execute(table.select()):
                text = str(tuple(row))
                assert "MRN-77" not in text and "Secret" not in text, table.name


def test_export_writes_the_sr_of_each_scored_instance_and_report_outbox_shows_pending(
    start, sources, tmp_path
) -> None:
    from gateway.sr_facts import sr_facts
    from tests.gateway.nodes import free_port
    from tests.helpers import run

    nowhere = f"PACS@127.0.0.1:{free_port()}"  # nothing listens: results stay pending
    listener = start(destinations=(nowhere,))
    paths = twins(sources, tmp_path / "twins")
    assert send(listener.port, paths) == [0, 0, 0]
    [job] = wait_for_jobs(1)
    out = run("export", str(job.id), "--dicom", tmp_path / "out")
    assert f"wrote 3 DICOM object(s) of job {job.id}" in out
    facts = [sr_facts(pydicom.dcmread(p)) for p in sorted((tmp_path / "out").glob("*.dcm"))]
    sent = {pydicom.dcmread(p).SOPInstanceUID for p in paths}
    assert {f["source_sop_instance_uid"] for f in facts} == sent
    run("export", str(job.id), "--dicom", tmp_path / "again")  # the same objects, byte for byte
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}
    table = run("report", "outbox", "--state", "pending")
    assert "3 pending, 0 sent, 0 failed" in table and nowhere in table
    assert "association" in run("report", "outbox", "--format", "csv")  # the reason


def test_an_instance_over_the_size_limit_is_refused(start, sources, tmp_path) -> None:
    listener = start(limits=ReceiverLimits(max_instance_bytes=1000))
    assert send(listener.port, twins(sources[:1], tmp_path / "twins")) == [0xA700]
    assert list(listener.spool.files()) == []


def test_a_spooled_file_goes_after_its_retention_once_nothing_is_owed(
    start, sources, tmp_path
) -> None:
    listener = start(spool_retention=0.0)
    paths = twins(sources[:1], tmp_path / "twins")
    for _ in range(2):  # the second time: sent again after its file went
        assert send(listener.port, paths) == [0]
        wait_for_jobs(1)
        deadline = time.monotonic() + 30
        while list(listener.spool.files()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert list(listener.spool.files()) == []
        with session_scope() as s:
            [instance] = s.scalars(select(DicomInstance)).all()
            assert len(s.scalars(select(Job)).all()) == 1  # scored once
        assert instance.deleted_at is not None


def test_a_file_whose_results_are_owed_stays_spooled(start, sources, tmp_path) -> None:
    from tests.gateway.nodes import free_port

    listener = start(spool_retention=0.0, destinations=(f"PACS@127.0.0.1:{free_port()}",))
    assert send(listener.port, twins(sources[:1], tmp_path / "twins")) == [0]
    wait_for_jobs(1)
    time.sleep(4)  # past a sweep of the spool
    assert len(list(listener.spool.files())) == 1
