"""Every sample DICOM file of other toolkits (pydicom's and pynetdicom's test files: CT, MR, US,
RT, SEG, SR, ECG, secondary captures, odd encodings) sent to the receiver is accounted for: a
refused status, or a row (an error row saying why it is not a chest radiograph, or a score)."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from db.schema import DicomInstance, Prediction
from db.session import session_scope
from gateway.receiver import DX_FOR_PRESENTATION
from tests.gateway.nodes import send
from tests.gateway.test_listener import start, wait_for_jobs  # noqa: F401 - fixtures

SAMPLE_DIRS = [
    Path(pydicom.__file__).parent / "data" / "test_files",
    Path(pydicom.__file__).parent.parent / "pynetdicom" / "tests" / "dicom_files",
]


def samples() -> list[Path]:
    found = sorted(p for d in SAMPLE_DIRS if d.is_dir() for p in d.rglob("*.dcm"))
    if len(found) < 20:
        pytest.fail(f"expected pydicom's and pynetdicom's sample files in {SAMPLE_DIRS}")
    return found


def _sendable(path: Path, folder: Path, as_dx: bool) -> Path | None:
    """The sample as a file an SCU can send (None: it has no SOP class or UID to send under);
    as_dx: relabelled Digital X-Ray For Presentation, as a misconfigured modality would."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        return None
    if (
        "SOPClassUID" not in ds
        or "SOPInstanceUID" not in ds
        or "TransferSyntaxUID" not in getattr(ds, "file_meta", {})
    ):
        return None
    if not as_dx:
        return path
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    out = folder / f"{len(list(folder.iterdir()))}.dcm"
    try:
        ds.save_as(out)
    except Exception:  # a sample pydicom reads but cannot write back: not sent
        out.unlink(missing_ok=True)
        return None
    return out


@pytest.mark.slow
def test_every_sample_sent_gets_a_refusal_or_a_row(start, tmp_path: Path) -> None:  # noqa: F811
    listener = start()
    (tmp_path / "as-is").mkdir()
    (tmp_path / "as-dx").mkdir()
    sent: list[tuple[str, object]] = []
    modality: dict[str, str | None] = {}
    for path in samples():
        for as_dx, folder in ((False, tmp_path / "as-is"), (True, tmp_path / "as-dx")):
            copy = _sendable(path, folder, as_dx)
            if copy is not None:
                [status] = send(listener.port, [copy])
                header = pydicom.dcmread(copy, stop_before_pixels=True)
                sent.append((header.SOPInstanceUID, status))
                modality[header.SOPInstanceUID] = header.get("Modality") or None
    accepted = {uid for uid, status in sent if status == 0}
    refused = [(uid, status) for uid, status in sent if status != 0]
    assert accepted and refused
    assert all(
        status in ("rejected", "not negotiated", 0xA900, 0xA700, 0xC000) for _, status in refused
    )
    deadline = time.monotonic() + 120
    while True:
        with session_scope() as s:
            kept = {i.sop_instance_uid: i.job_id for i in s.scalars(select(DicomInstance))}
            rows = {r.sop_instance_uid: r for r in s.scalars(select(Prediction))}
        if accepted <= set(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert accepted <= set(kept), "an acknowledged instance has no instance row"
    missing = accepted - set(rows)
    assert not missing, f"{len(missing)} acknowledged instances have no prediction row"
    scored = {uid for uid in accepted if rows[uid].prob is not None}
    assert all(rows[uid].error for uid in accepted - scored)
    # Not one of these samples is a chest radiograph. A header that says so (CT, MR, US, RT,
    # SEG, SR, OT...) is never scored; only files whose header says nothing are read as before.
    assert all(modality[uid] in (None, "CR", "DX") for uid in scored), scored
    assert any("not a radiograph: Modality" in rows[uid].error for uid in accepted - scored)
