"""DICOM reading: each encoding hospitals send decodes to the pixels of the X-ray it came from."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from training.data.data_files import is_image_file, list_images, patient_id
from training.data.dicom import DicomError, is_dicom, open_dicom
from training.data.dicom_identity import identity, patient_hash
from training.data.dicom_write import DicomSpec, write_dicom
from training.data.preprocess import ImageDecodeError, decode_image
from training.data.splits import patient_split

# (spec, largest mean and max absolute difference from the source, in 8-bit levels).
# Lossless encodings without a VOI LUT give the source back exactly; the VOI LUT case stores
# gamma-encoded values, which lose a few levels in the darkest shades; JPEG baseline is lossy.
CASES = {
    "mono2-8bit": (DicomSpec(), 0.0, 0),
    "mono2-12bit": (DicomSpec(bits=12), 0.0, 0),
    "mono1-16bit": (DicomSpec(bits=16, monochrome1=True), 0.0, 0),
    "12bit-rescale-window": (DicomSpec(bits=12, rescale=(2.0, -1024.0), window=True), 0.0, 1),
    "16bit-rescale": (DicomSpec(bits=16, rescale=(0.5, 100.0)), 0.0, 1),
    "signed-16bit": (DicomSpec(bits=16, signed=True), 0.0, 0),
    "signed-12bit-mono1": (DicomSpec(bits=12, signed=True, monochrome1=True), 0.0, 0),
    "mono1-12bit-window": (DicomSpec(bits=12, monochrome1=True, window=True), 0.0, 1),
    "12bit-voi-lut": (DicomSpec(bits=12, voi_gamma=2.0), 0.1, 4),
    "mono1-16bit-voi-lut": (DicomSpec(bits=16, monochrome1=True, voi_gamma=0.5), 0.1, 4),
    "jpeg-baseline": (DicomSpec(encoding="jpeg-baseline"), 1.0, 12),
    "jpeg-baseline-mono1": (DicomSpec(encoding="jpeg-baseline", monochrome1=True), 1.0, 12),
    "jpeg2000-8bit": (DicomSpec(encoding="jpeg2000"), 0.0, 0),
    "jpeg2000-12bit": (DicomSpec(bits=12, encoding="jpeg2000"), 0.0, 0),
    "jpeg2000-mono1-16bit": (DicomSpec(bits=16, monochrome1=True, encoding="jpeg2000"), 0.0, 0),
    "rle-16bit": (DicomSpec(bits=16, encoding="rle"), 0.0, 0),
    "rle-mono1-8bit": (DicomSpec(monochrome1=True, encoding="rle"), 0.0, 0),
    "no-preamble": (DicomSpec(preamble=False), 0.0, 0),
}


@pytest.fixture()
def xray(shared_data: Path) -> tuple[Path, np.ndarray]:
    """A real X-ray from the external set and its 8-bit gray pixels."""
    src = sorted((shared_data / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))[0]
    return src, np.array(Image.open(src).convert("L"))


@pytest.mark.parametrize("case", CASES)
def test_each_encoding_decodes_to_the_source_pixels(case, xray, tmp_path) -> None:
    spec, mean_tol, max_tol = CASES[case]
    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], spec)
    decoded = np.array(open_dicom(path))
    diff = np.abs(decoded.astype(int) - xray[1])
    assert decoded.shape == xray[1].shape
    assert diff.mean() <= mean_tol and diff.max() <= max_tol, (diff.mean(), diff.max())


@pytest.mark.parametrize("case", ["mono1-16bit", "12bit-voi-lut", "12bit-rescale-window"])
def test_a_naive_read_of_the_same_file_is_wrong(case, xray, tmp_path) -> None:
    """The cases above have teeth: stored values scaled by their bit depth alone are far off."""
    spec = CASES[case][0]
    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], spec)
    stored = pydicom.dcmread(path).pixel_array.astype(float)
    naive = stored * 255 / (2**spec.bits - 1)
    if spec.rescale:  # reading the rescaled values as if they were display levels
        naive = np.clip(stored * spec.rescale[0] + spec.rescale[1], 0, 255)
    assert np.abs(naive - xray[1]).mean() > 10


@pytest.mark.parametrize(
    "case",
    ["mono1-16bit", "jpeg-baseline", "jpeg2000-8bit", "jpeg2000-12bit", "jpeg2000-mono1-16bit"],
)
def test_the_model_input_matches_the_jpeg_input(case, xray, tmp_path) -> None:
    """Reduced-scale decoding (JPEG draft, JPEG 2000 resolution levels, box reduce) gives the
    model nearly the input the source JPEG gives it."""
    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], CASES[case][0])
    from_jpeg = decode_image(xray[0], 64, crop=0.85).int()
    from_dicom = decode_image(path, 64, crop=0.85).int()
    assert (from_dicom - from_jpeg).abs().float().mean() < 1.5


def test_files_are_found_by_extension_or_by_their_marker(xray, tmp_path) -> None:
    write_dicom(tmp_path / "a.dcm", xray[1], DicomSpec())
    write_dicom(tmp_path / "b.DICOM", xray[1], DicomSpec())
    write_dicom(tmp_path / "IM000123", xray[1], DicomSpec())  # as a PACS export names them
    (tmp_path / "README").write_text("not an image")
    (tmp_path / "notes.txt").write_text("DICM" * 100)
    found = [p.name for p in list_images(tmp_path)]
    assert found == ["IM000123", "a.dcm", "b.DICOM"]
    assert is_dicom(tmp_path / "IM000123") and not is_image_file(tmp_path / "README")


def _multi_frame(path: Path, pixels: np.ndarray) -> None:
    write_dicom(path, pixels, DicomSpec())
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = pixels.tobytes() * 2
    ds.save_as(path)


def test_files_that_are_not_one_radiograph_are_one_line_errors(xray, tmp_path) -> None:
    broken = tmp_path / "broken.dcm"
    write_dicom(broken, xray[1], DicomSpec(encoding="jpeg-baseline"))
    data = broken.read_bytes()
    broken.write_bytes(data.replace(b"\xff\xd8\xff", b"\x00\x00\x00", 1))  # frame's JPEG header
    (tmp_path / "cut.dcm").write_bytes(data[:-4000])  # the file ends inside the frame
    _multi_frame(tmp_path / "cine.dcm", xray[1])
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 50)
    reasons = {}
    for name in ("broken.dcm", "cut.dcm", "cine.dcm", "junk.dcm"):
        with pytest.raises(ImageDecodeError) as exc:
            decode_image(tmp_path / name, 64)
        reasons[name] = str(exc.value)
    assert "in JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)" in reasons["broken.dcm"]
    assert "cut short" in reasons["cut.dcm"]
    assert "multi-frame DICOM (2 frames)" in reasons["cine.dcm"]
    assert reasons["junk.dcm"].startswith(("not a DICOM file", "DICOM file holds no image"))
    assert all("\n" not in r for r in reasons.values())


@pytest.mark.parametrize("case", ["jpeg-baseline", "jpeg2000-12bit"])
def test_compressed_frames_decode_at_reduced_scale(case, xray, tmp_path, monkeypatch) -> None:
    """What keeps DICOM scoring near JPEG speed: PIL decodes these frames at reduced scale,
    and pydicom's full-size decoders are not called."""
    import training.data.dicom

    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], CASES[case][0])

    def full_size(ds):  # noqa: ANN001, ANN202
        raise AssertionError("decoded at full size")

    monkeypatch.setattr(training.data.dicom, "_pixel_array", full_size)
    assert open_dicom(path, draft=64).size[0] < xray[1].shape[1]


def test_a_size_pillow_rejects_at_one_level_still_decodes_reduced(tmp_path, monkeypatch) -> None:
    """Pillow refuses a 1963 x 2172 JPEG 2000 frame at 1/8 (not at 1/4): fewer levels are
    tried before a full-size decode, which costs ~20x as much."""
    import training.data.dicom

    y, x = np.mgrid[0:2172, 0:1963]
    smooth = ((x + y) * 255 / (2172 + 1963)).astype(np.uint8)
    write_dicom(tmp_path / "x.dcm", smooth, DicomSpec(bits=12, encoding="jpeg2000"))
    monkeypatch.setattr(training.data.dicom, "_pixel_array", None)  # a full-size decode would fail
    reduced = open_dicom(tmp_path / "x.dcm", draft=128)
    assert reduced.size == (491, 543)  # 1/4
    expected = np.array(Image.fromarray(smooth).resize(reduced.size, Image.Resampling.BOX))
    assert np.abs(np.array(reduced).astype(int) - expected).mean() < 1.0


def test_a_missing_decoder_names_the_syntax_and_what_to_install(xray, tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], CASES["jpeg2000-12bit"][0])
    monkeypatch.setattr(get_decoder(JPEG2000Lossless), "_available", {})  # no plugin installed
    with pytest.raises(DicomError) as exc:
        open_dicom(path)  # full size: the decoders pydicom has, and none is there
    assert "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)" in str(exc.value)
    assert "install pylibjpeg-openjpeg" in str(exc.value)


def test_patients_come_from_the_header_and_stay_on_one_side(xray, tmp_path) -> None:
    from training.data.data_files import LabeledImage

    items = []
    for i in range(12):  # six patients, two films each, under names that say nothing
        path = tmp_path / f"film{i:02d}.dcm"
        write_dicom(path, xray[1], DicomSpec(patient_id=f"MRN-{i // 2:04d}"))
        items.append(LabeledImage(str(path), i % 4 // 2, patient_id(path)))
    assert len({item.patient for item in items}) == 6
    assert all("MRN" not in item.patient for item in items)  # not even in memory
    train, val = patient_split(items, 0.34, seed=0)
    assert train and val and not {i.patient for i in train} & {i.patient for i in val}

    anonymous = tmp_path / "IM-0042-0001.dcm"  # no PatientID: the file-name rule
    write_dicom(anonymous, xray[1], DicomSpec(patient_id=None))
    assert patient_id(anonymous) == "im-42"


def test_rows_keep_a_salted_hash_and_never_the_id(xray, tmp_path) -> None:
    path = tmp_path / "x.dcm"
    write_dicom(path, xray[1], DicomSpec(patient_id="MRN-0001"))
    unsalted = identity(path, None)
    assert unsalted.patient_hash is None  # no salt: an unsalted hash of an MRN is reversible
    assert identity(path, "").patient_hash is None
    assert unsalted.sop_instance_uid == pydicom.dcmread(path).SOPInstanceUID
    salted = identity(path, "s3cret").patient_hash
    assert len(salted) == 32 and "MRN" not in salted
    assert salted == patient_hash("MRN-0001", "s3cret") != patient_hash("MRN-0001", "other")
    assert identity(tmp_path / "y.jpeg", "s3cret") is None
