"""End to end against a real PACS and a real modality: DCMTK's storescu sends complete DICOM
twins of real X-rays to `cxrq listen` (a subprocess, embedded mode); cxrq scores them and sends
an SR and a secondary capture into the same study of an Orthanc started on loopback ports. Also
the faults: Orthanc down while results are pending, and the listener SIGKILLed mid-study."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from db.schema import OutboxItem, Prediction
from db.session import dispose_engines, session_scope
from tests.gateway.nodes import Orthanc, free_port, need_orthanc, twins
from tests.helpers import add_tiny_model

pytestmark = pytest.mark.slow
STORESCU = shutil.which("storescu")


@pytest.fixture()
def orthanc(tmp_path: Path):
    need_orthanc()
    pacs = Orthanc(tmp_path / "orthanc")
    pacs.folder.mkdir()
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture()
def xrays(shared_data: Path) -> list[Path]:
    test = shared_data / "chest_xray" / "test"
    return [
        sorted((test / "PNEUMONIA").glob("*.jpeg"))[0],
        sorted((test / "NORMAL").glob("*.jpeg"))[0],
    ]


@pytest.fixture()
def model_id(db_url: str, tiny_checkpoint: dict) -> int:
    model = add_tiny_model(tiny_checkpoint)
    dispose_engines()
    return model


class Listening:
    """`cxrq listen` as its own process; its output in a file."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.port = free_port()
        self.log = folder / f"listen-{self.port}.log"
        self.args = [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--spool",
            str(folder / "spool"),
            *args,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> Listening:
        cli = [sys.executable, "-c", "from cli.main import main; main()", "listen", *self.args]
        out = open(self.log, "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(cli, stdout=out, stderr=out, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if b"listening as" in self.log.read_bytes():
                return self
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(60)


def storescu(port: int, paths: list[Path]) -> subprocess.CompletedProcess:
    assert STORESCU, "DCMTK is not installed: apt-get install dcmtk"
    cmd = [STORESCU, "-aet", "MODALITY", "-aec", "CXRQ", "127.0.0.1", str(port), *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen in {timeout} s")


def study_in_orthanc(pacs: Orthanc, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """The study's instances in Orthanc, by modality."""
    found = pacs.post(
        "/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
    )
    by_modality: dict[str, list[pydicom.Dataset]] = {}
    for instance_id in found:
        from io import BytesIO

        ds = pydicom.dcmread(BytesIO(pacs.file(instance_id)))
        by_modality.setdefault(str(ds.Modality), []).append(ds)
    return by_modality


def test_storescu_to_listen_to_orthanc_sr_and_sc_in_the_same_study(
    orthanc, xrays, model_id, tmp_path
) -> None:
    from gateway.sr_facts import sr_facts

    listening = Listening(
        tmp_path, "--model", str(model_id), "--send-to", orthanc.destination, "--explain", "all"
    ).start()
    try:
        paths = twins(xrays, tmp_path / "twins")
        sent = storescu(listening.port, paths)
        assert sent.returncode == 0, sent.stderr
        sources = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, paths)}
        study_uid = next(iter(sources.values())).StudyInstanceUID
        for path in paths:  # the PACS gets the sources too, as a modality would send them
            assert storescu_to(orthanc, path).returncode == 0
        study = wait(
            lambda: (
                (s := study_in_orthanc(orthanc, study_uid)).get("SR")
                and len(s["SR"]) == 2
                and len(s.get("OT", [])) == 2
                and s
            ),
            90,
            "2 SR and 2 SC in Orthanc",
        )
    finally:
        listening.stop()
    log = listening.log.read_text()
    assert "kept instance" in log and "Doe" not in log and "P-0001" not in log  # UIDs only
    with session_scope() as s:
        rows = {r.sop_instance_uid: r for r in s.scalars(select(Prediction))}
    assert set(rows) == set(sources)
    for sr in study["SR"]:
        facts = sr_facts(sr)
        row = rows[facts["source_sop_instance_uid"]]
        assert facts["label"] == row.label
        assert facts["prob"] == row.prob and facts["threshold"] == row.threshold
        assert (facts["model_id"], facts["job_id"], facts["verified"]) == (
            model_id,
            row.job_id,
            False,
        )
        assert sr.PatientID == sources[facts["source_sop_instance_uid"]].PatientID
        assert len({ds.SeriesInstanceUID for ds in study["SR"]}) == 1
    for sc in study["OT"]:
        assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert sc.BurnedInAnnotation == "YES"
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in sources


def storescu_to(pacs: Orthanc, path: Path) -> subprocess.CompletedProcess:
    cmd = [STORESCU, "-aec", pacs.aet, "127.0.0.1", str(pacs.dicom_port), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_stow_rs_sends_the_sr_to_orthancs_dicomweb(orthanc, xrays, model_id, tmp_path) -> None:
    stow = f"{orthanc.url}/dicom-web"
    listening = Listening(
        tmp_path, "--model", str(model_id), "--stow", stow, "--explain", "none"
    ).start()
    try:
        paths = twins(xrays[:1], tmp_path / "twins")
        assert storescu(listening.port, paths).returncode == 0
        study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
        study = wait(lambda: study_in_orthanc(orthanc, study_uid).get("SR"), 90, "SR by STOW-RS")
    finally:
        listening.stop()
    assert len(study) == 1 and outbox_counts() == {"sent": 1}


def outbox_counts() -> dict[str, int]:
    with session_scope() as s:
        query = select(OutboxItem.state, func.count()).group_by(OutboxItem.state)
        return dict(s.execute(query).all())


def test_results_pending_while_orthanc_is_down_all_arrive_when_it_returns(
    orthanc, xrays, model_id, tmp_path
) -> None:
    orthanc.stop()
    listening = Listening(
        tmp_path, "--model", str(model_id), "--send-to", orthanc.destination, "--explain", "none"
    ).start()
    try:
        paths = twins(xrays, tmp_path / "twins")
        assert storescu(listening.port, paths).returncode == 0
        wait(lambda: outbox_counts().get("pending") == 2 and _tried(), 90, "2 pending, tried")
        orthanc.start()  # the same ports
        wait(lambda: outbox_counts() == {"sent": 2}, 120, "both sent")
    finally:
        listening.stop()
    study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
    assert len(study_in_orthanc(orthanc, study_uid)["SR"]) == 2


def _tried() -> bool:
    with session_scope() as s:
        return all(i.attempts >= 1 and i.last_error for i in s.scalars(select(OutboxItem)))


def test_the_listener_killed_mid_study_scores_every_acknowledged_instance_after_restart(
    xrays, model_id, tmp_path
) -> None:
    from pynetdicom import AE

    listening = Listening(tmp_path, "--model", str(model_id), "--study-idle", "600").start()
    paths = twins(xrays, tmp_path / "twins")
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.1", ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", listening.port, ae_title="CXRQ")
    statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in paths]
    assert statuses == [0, 0]
    listening.stop(signal.SIGKILL)  # mid-study: the association is still open
    assoc.abort()
    listening.start()
    try:
        with_rows = wait(lambda: _scored() == 2 and 2, 90, "both instances scored")
    finally:
        listening.stop()
    assert with_rows == 2


def _scored() -> int:
    with session_scope() as s:
        return s.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.prob.is_not(None))
        )
