"""DICOM beside JPEG: a mixed folder scores row for row like the JPEGs it was made from,
embedded and queued, and a DICOM folder trains with patients from the headers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from sqlalchemy import select

from db.schema import Job, Model, Prediction
from db.session import session_scope
from tests.conftest import make_xray
from tests.helpers import add_tiny_model, run
from training.data.data_files import find_splits
from training.data.dicom_write import DicomSpec, write_dicom

# Every encoding the reader handles, one per source image (cycled).
SPECS = {
    "mono1-16bit": DicomSpec(bits=16, monochrome1=True),
    "jpeg-baseline": DicomSpec(encoding="jpeg-baseline"),
    "jpeg2000-12bit": DicomSpec(bits=12, encoding="jpeg2000"),
    "rle-16bit-mono1": DicomSpec(bits=16, monochrome1=True, encoding="rle"),
    "voi-lut-12bit": DicomSpec(bits=12, voi_gamma=2.0),
    "rescale-window-12bit": DicomSpec(bits=12, rescale=(2.0, -1024.0), window=True),
    "no-patient-id": DicomSpec(patient_id=None),
}
SALT = "test-salt"


def mixed_folder(sources: list[Path], root: Path) -> dict[str, str]:
    """Each source as a JPEG and a DICOM twin, in its class folder, plus two bad DICOMs;
    returns {dicom name: jpeg name}."""
    twins = {}
    for i, src in enumerate(sources):
        cls = "PNEUMONIA" if "PNEUMONIA" in src.parts or "person" in src.name else "NORMAL"
        name, spec = list(SPECS.items())[i % len(SPECS)]
        gray = np.array(Image.open(src).convert("L"))
        jpeg = root / cls / f"x{i}.png"  # lossless: the twin holds exactly the same pixels
        jpeg.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gray).save(jpeg)
        dicom = root / cls / (f"x{i}-{name}.dcm" if i % 2 else f"X{i}{name.upper()[:3]}")
        write_dicom(
            dicom,
            gray,
            replace(spec, patient_id=spec.patient_id and f"MRN-{i:04d}"),
        )
        twins[dicom.name] = jpeg.name
    (root / "NORMAL").mkdir(exist_ok=True)
    write_dicom(root / "NORMAL" / "broken.dcm", gray, DicomSpec(encoding="jpeg-baseline"))
    data = (root / "NORMAL" / "broken.dcm").read_bytes()
    (root / "NORMAL" / "broken.dcm").write_bytes(data.replace(b"\xff\xd8\xff", b"\0\0\0", 1))
    cine = root / "NORMAL" / "cine.dcm"
    write_dicom(cine, gray, DicomSpec())
    ds = pydicom.dcmread(cine)
    ds.NumberOfFrames, ds.PixelData = 2, ds.PixelData * 2
    ds.save_as(cine)
    return twins


def check_rows(job_id: int, twins: dict[str, str]) -> dict[str, Prediction]:
    with session_scope() as s:
        rows = {
            Path(r.path).name: r
            for r in s.scalars(select(Prediction).where(Prediction.job_id == job_id))
        }
    assert len(rows) == 2 * len(twins) + 2
    for dicom, jpeg in twins.items():
        d, j = rows[dicom], rows[jpeg]
        assert d.error is None and (d.label, d.true_label) == (j.label, j.true_label), dicom
        assert d.prob == pytest.approx(j.prob, abs=0.02), dicom
        assert d.sop_instance_uid and j.sop_instance_uid is None
    assert "JPEG Baseline" in rows["broken.dcm"].error and rows["broken.dcm"].prob is None
    assert "multi-frame" in rows["cine.dcm"].error
    stored = " ".join(str(v) for r in rows.values() for v in vars(r).values())
    assert "MRN" not in stored and "Doe" not in stored and "20200101" not in stored
    return rows


def test_a_mixed_folder_scores_row_for_row_like_its_jpegs(
    db_url, tiny_checkpoint, shared_data, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CXRQ_PATIENT_SALT", SALT)
    add_tiny_model(tiny_checkpoint)
    test = shared_data / "chest_xray" / "test"
    sources = (
        sorted((test / "NORMAL").glob("*.jpeg"))[:7]
        + sorted((test / "PNEUMONIA").glob("*.jpeg"))[:7]
    )
    twins = mixed_folder(sources, tmp_path / "mixed")
    out = run("score", tmp_path / "mixed", "--chunk-size", 5)
    assert "30 images: 28 scored, 2 unreadable" in out, out
    with session_scope() as s:
        job_id = s.scalars(select(Job.id).where(Job.kind == "score")).one()
    rows = check_rows(job_id, twins)
    hashes = [rows[n].patient_hash for n in twins]
    assert hashes.count(None) == 2  # the two files without a PatientID
    named = [h for h in hashes if h is not None]
    assert len(set(named)) == len(named) and all(len(h) == 32 for h in named)
    csv = run("report", "predictions", job_id, "--format", "csv")
    assert csv.splitlines()[0].endswith(",sop_instance_uid,patient_hash")
    assert rows[next(iter(twins))].sop_instance_uid in csv and named[0] in csv


def test_the_comparison_has_teeth(db_url, tiny_checkpoint, shared_data, tmp_path) -> None:
    """An inverted decode (MONOCHROME1 read as MONOCHROME2) moves the tiny model's probability
    by more than the 0.02 the twins must agree within, so agreeing twins mean something."""
    add_tiny_model(tiny_checkpoint)
    folder = tmp_path / "pair"
    folder.mkdir()
    sources = sorted((shared_data / "chest_xray" / "test" / "NORMAL").glob("*.jpeg"))[:3]
    for i, src in enumerate(sources):
        gray = np.array(Image.open(src).convert("L"))
        Image.fromarray(gray).save(folder / f"{i}.png")
        write_dicom(folder / f"{i}.dcm", gray, DicomSpec(monochrome1=True))
        ds = pydicom.dcmread(folder / f"{i}.dcm")
        ds.PhotometricInterpretation = "MONOCHROME2"  # the naive read
        ds.save_as(folder / f"{i}.dcm")
    run("score", folder)
    with session_scope() as s:
        probs = {Path(r.path).name: r.prob for r in s.scalars(select(Prediction))}
    assert all(abs(probs[f"{i}.dcm"] - probs[f"{i}.png"]) > 0.02 for i in range(3)), probs


def test_a_dicom_folder_trains_with_patients_from_the_headers(db_url, tmp_path) -> None:
    root = tmp_path / "dicoms"
    for i in range(16):  # eight patients, two films each; file names carry no patient
        for cls, pneumonia in (("NORMAL", False), ("PNEUMONIA", True)):
            png = make_xray(tmp_path / "png" / f"{cls}{i}.png", pneumonia, i + 100 * pneumonia)
            dicom = root / "train" / cls / f"film{i:03d}.dcm"
            dicom.parent.mkdir(parents=True, exist_ok=True)
            write_dicom(
                dicom, np.array(Image.open(png)), DicomSpec(bits=12, patient_id=f"{cls}-{i // 2}")
            )
    patients = {item.patient for item in find_splits(root)["train"]}
    assert len(patients) == 16 and all(p.startswith("dicom:") for p in patients)
    out = run("train", "--arch", "cnn", "--data", root, "--epochs", 2, "--img-size", 32)
    assert "validation: F1" in out, out
    with session_scope() as s:
        model = s.scalars(select(Model)).one()
    assert model.data["n_val"] > 0 and model.data["n_val"] % 2 == 0  # whole patients only


def test_queued_workers_score_a_mixed_folder_like_embedded(
    workers, tiny_checkpoint, shared_data, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CXRQ_PATIENT_SALT", SALT)  # the workers inherit it
    add_tiny_model(tiny_checkpoint)
    workers.start()
    sources = sorted((shared_data / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))[:7]
    twins = mixed_folder(sources, tmp_path / "mixed")
    out = run("score", tmp_path / "mixed", "--chunk-size", 4, "--wait")
    assert "succeeded" in out and "16 images: 14 scored, 2 unreadable" in out, out + workers.logs()
    with session_scope() as s:
        job_id = s.scalars(select(Job.id).where(Job.kind == "score")).one()
    rows = check_rows(job_id, twins)
    assert [rows[n].patient_hash is None for n in twins].count(True) == 1
