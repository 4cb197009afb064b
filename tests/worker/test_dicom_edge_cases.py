"""One file never fails a job: DICOM files of every bit depth (1-32, signed and unsigned), every
photometric interpretation pydicom knows, odd sizes and frame counts, and files that are not
images at all each get one row, embedded and queued; the job is never `failed`. Each file's
header says CR, so the header rules (training.data.dicom_rules) let its pixels be tried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.pixels.common import PhotometricInterpretation
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select

from db.schema import Job, Prediction
from db.session import session_scope
from tests.helpers import add_tiny_model, run
from training.data.dicom import open_dicom
from training.data.dicom_display import display_lut
from training.data.preprocess import decode_many

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SR_DOCUMENT = "1.2.840.10008.5.1.4.1.1.88.11"
COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "HSV"}
COLOUR |= {"YBR_PARTIAL_422", "YBR_PARTIAL_420"}


def _dataset(sop_class: str = CR_STORAGE) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.Modality = "EDGE-1", "CR"
    return ds


def _image(
    path: Path,
    pixels: np.ndarray,
    bits: int,
    photometric: str = "MONOCHROME2",
    frames: int | None = None,
    allocated: int | None = None,
) -> Path:
    """A dataset whose tags describe `pixels` (frames, rows, columns[, samples]) as stored."""
    ds = _dataset()
    samples = pixels.shape[-1] if pixels.ndim == 4 else 1
    ds.NumberOfFrames = frames if frames is not None else pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = allocated or pixels.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    ds.PixelData = pack_bits(pixels) if ds.BitsAllocated == 1 else pixels.tobytes()
    if photometric == "PALETTE COLOR":
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            ramp = (np.arange(256, dtype="<u2") * 257).tobytes()
            setattr(ds, f"{colour}PaletteColorLookupTableData", ramp)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ramp(bits: int, signed: bool, shape: tuple[int, int] = (37, 29)) -> np.ndarray:
    """Every pixel value from the lowest to the highest the stored bits hold, spread evenly."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    values = np.linspace(lo, hi, shape[0] * shape[1]).round().astype(np.int64)
    allocated = 8 if bits <= 8 else 16 if bits <= 16 else 32
    dtype = np.dtype(f"{'i' if signed else 'u'}{allocated // 8}")
    return values.reshape(1, *shape).astype(dtype)


def edge_folder(root: Path) -> list[Path]:
    """Every case in one folder; returns the files written."""
    root.mkdir(parents=True)
    files = []
    for bits in range(1, 33):
        for signed in (False, True):
            name = f"bits{bits:02d}{'s' if signed else 'u'}.dcm"
            files.append(_image(root / name, _ramp(bits, signed), bits))
    packed = _ramp(1, False).astype(np.uint8)
    files.append(_image(root / "bits01-packed.dcm", packed, 1, allocated=1))
    rng = np.random.default_rng(0)
    for photometric in PhotometricInterpretation.__members__:
        photometric = (
            photometric.replace("_", " ") if photometric == "PALETTE_COLOR" else photometric
        )
        samples = 3 if photometric in COLOUR else 4 if photometric in ("ARGB", "CMYK") else 1
        shape = (1, 24, 20, samples) if samples > 1 else (1, 24, 20)
        pixels = rng.integers(0, 255, size=shape, endpoint=True).astype(np.uint8)
        files.append(
            _image(root / f"pi-{photometric.replace(' ', '_')}.dcm", pixels, 8, photometric)
        )
    for rows, cols in ((1, 1), (1, 9), (9, 1), (3, 5)):
        pixels = rng.integers(0, 4095, size=(1, rows, cols)).astype(np.uint16)
        files.append(_image(root / f"size{rows}x{cols}.dcm", pixels, 12))
    for frames in (0, 2, 3):
        pixels = rng.integers(0, 255, size=(max(frames, 1), 8, 8)).astype(np.uint8)
        files.append(_image(root / f"frames{frames}.dcm", pixels, 8, frames=frames))
    files.append(_image(root / "cut-short.dcm", np.zeros((1, 64, 64), np.uint16), 16))
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) - 4000])
    big = _dataset()
    big.Rows = big.Columns = 65535
    big.SamplesPerPixel, big.PhotometricInterpretation = 1, "MONOCHROME2"
    big.BitsAllocated, big.BitsStored, big.HighBit, big.PixelRepresentation = 32, 32, 31, 0
    big.PixelData = b"\0" * 64  # the header claims 16 GiB
    big.save_as(root / "claims-16GiB.dcm", enforce_file_format=True)
    report = _dataset(SR_DOCUMENT)
    report.Modality = "SR"
    report.save_as(root / "report-sr.dcm", enforce_file_format=True)
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    (root / "empty.dcm").write_bytes(b"")
    return [*files, root / "claims-16GiB.dcm", root / "report-sr.dcm", root / "DICOMDIR"]


def test_a_32_bit_ramp_is_displayed_without_a_table_of_every_value(tmp_path) -> None:
    """The full-range VOI of a 32-bit file maps stored 0..2^32-1 onto 0..255 from the values
    present, and no 2^32-row table is built."""
    path = _image(tmp_path / "dose.dcm", _ramp(32, False), 32)
    shown = np.asarray(open_dicom(path), dtype=np.int64)
    expected = np.rint(_ramp(32, False)[0] / (2**32 - 1) * 255.0)
    assert np.abs(shown - expected).max() <= 1
    import pydicom

    with pytest.raises(ValueError, match="not built"):
        display_lut(pydicom.dcmread(path))


def test_every_edge_case_decodes_or_gives_one_line(tmp_path) -> None:
    files = edge_folder(tmp_path / "edge")
    decoded = decode_many(files, 32)
    assert len(decoded.ok_index) + len(decoded.errors) == len(files)
    assert all("\n" not in e and e for e in decoded.errors.values())
    names = {files[i].name for i in decoded.ok_index}
    assert {f"bits{b:02d}{s}.dcm" for b in range(1, 33) for s in "us"} <= names
    assert {"pi-MONOCHROME1.dcm", "pi-RGB.dcm", "size1x1.dcm", "bits01-packed.dcm"} <= names
    failed = {files[i].name: e for i, e in decoded.errors.items()}
    assert "multi-frame" in failed["frames3.dcm"] and "too large" in failed["claims-16GiB.dcm"]
    assert failed["report-sr.dcm"] == "not a radiograph: Modality SR"


def test_a_file_that_raises_anything_is_its_own_error_row(tmp_path, monkeypatch) -> None:
    """MemoryError (or any exception) from one file's decode: an error for that file only."""
    import training.data.preprocess as preprocess

    files = edge_folder(tmp_path / "edge")[:4]
    real = preprocess.decode_with_header

    def blows_up(path, *args):  # noqa: ANN001, ANN202
        if Path(path).name == files[1].name:
            raise MemoryError("Unable to allocate 32.0 GiB")
        return real(path, *args)

    monkeypatch.setattr(preprocess, "decode_with_header", blows_up)
    decoded = decode_many(files, 32)
    assert decoded.ok_index == [0, 2, 3]
    assert decoded.errors == {1: "cannot decode image: MemoryError: Unable to allocate 32.0 GiB"}


def _rows(job_id: int) -> dict[str, Prediction]:
    with session_scope() as s:
        query = select(Prediction).where(Prediction.job_id == job_id)
        return {Path(r.path).name: r for r in s.scalars(query)}


def _check_job(out: str, folder: Path, files: list[Path]) -> None:
    with session_scope() as s:
        job = s.scalars(select(Job).where(Job.kind == "score")).one()
        assert job.state in ("succeeded", "partial"), job.message
    rows = _rows(job.id)
    assert set(rows) == {f.name for f in folder.iterdir()}, out
    scored = {n for n, r in rows.items() if r.error is None}
    assert {"bits32u.dcm", "bits32s.dcm", "bits28u.dcm", "pi-MONOCHROME1.dcm"} <= scored
    assert all(r.prob is None and "\n" not in r.error for r in rows.values() if r.error)
    assert f"{len(rows)} images: {len(scored)} scored, {len(rows) - len(scored)} unreadable" in out


def test_an_edge_case_folder_scores_one_row_a_file_embedded(
    db_url, tiny_checkpoint, tmp_path
) -> None:
    add_tiny_model(tiny_checkpoint)
    files = edge_folder(tmp_path / "edge")
    out = run("score", tmp_path / "edge", "--chunk-size", 16)
    _check_job(out, tmp_path / "edge", files)


def test_an_edge_case_folder_scores_one_row_a_file_queued(
    workers, tiny_checkpoint, tmp_path
) -> None:
    add_tiny_model(tiny_checkpoint)
    workers.start()
    files = edge_folder(tmp_path / "edge")
    out = run("score", tmp_path / "edge", "--chunk-size", 16, "--wait")
    _check_job(out + workers.logs(), tmp_path / "edge", files)
