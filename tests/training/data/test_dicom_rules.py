"""The header before the pixels: a DICOM file that is not a chest radiograph is one error line
before any pixel is decoded; a scored one carries the flags its header raises; a file without
the tags reads as it always did; and twins are complete CR and DX instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

import training.data.dicom
from training.data.dicom import DicomError, open_dicom
from training.data.dicom_rules import (
    DX_PROCESSING,
    FOR_PROCESSING,
    HEADER_REASONS,
    header_flags,
    is_chest,
)
from training.data.dicom_write import DicomSpec, chest_twin, write_dicom
from training.data.preprocess import decode_image, decode_many

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
US_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray - For Presentation
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
# Not frontal chests: the exemption does not apply.
NO_VIEW = {"body_part": None, "view_position": None}
# The header of a file written before DicomSpec wrote these tags.
TAGLESS = DicomSpec(
    modality=None, sop_class_uid=None, presentation_intent=None, body_part=None, view_position=None
)

REFUSED = {
    "ct": (
        DicomSpec(modality="CT", sop_class_uid=CT_STORAGE, **NO_VIEW),
        "not a radiograph: Modality CT",
    ),
    "mr": (
        DicomSpec(modality="MR", sop_class_uid=MR_STORAGE, body_part="BRAIN", view_position=None),
        "not a radiograph: Modality MR",
    ),
    "us": (
        DicomSpec(modality="US", sop_class_uid=US_STORAGE, **NO_VIEW),
        "not a radiograph: Modality US",
    ),
    "seg": (
        DicomSpec(modality="SEG", sop_class_uid=SEG_STORAGE, **NO_VIEW),
        "not a radiograph: Modality SEG",
    ),
    "mg": (
        DicomSpec(modality="MG", sop_class_uid=MG_STORAGE, body_part="BREAST", view_position=None),
        "not a chest radiograph: Modality MG (mammography)",
    ),
    "io": (
        DicomSpec(modality="IO", body_part="JAW", view_position=None),
        "not a chest radiograph: Modality IO (intra-oral)",
    ),
    "sop-class": (
        DicomSpec(sop_class_uid=CT_STORAGE, **NO_VIEW),
        f"not a radiograph: SOP class CT Image Storage ({CT_STORAGE})",
    ),
    "unknown-sop-class": (
        DicomSpec(sop_class_uid="1.2.3.4", **NO_VIEW),
        "not a radiograph: SOP class 1.2.3.4",
    ),
    "ct-chest-lateral": (
        DicomSpec(modality="CT", body_part="CHEST", view_position="LL"),
        "not a radiograph: Modality CT",
    ),
    "for-processing": (
        DicomSpec(sop_class_uid=DX_PROCESSING, presentation_intent="FOR PROCESSING", **NO_VIEW),
        FOR_PROCESSING,
    ),
    "for-processing-intent": (DicomSpec(presentation_intent="FOR PROCESSING"), FOR_PROCESSING),
    # A chest PA is exempt from the modality and SOP class rules, not this one: raw detector
    # values are not the picture.
    "for-processing-chest-pa": (DicomSpec(sop_class_uid=DX_PROCESSING), FOR_PROCESSING),
}


@pytest.fixture()
def pixels() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:64]
    return ((x * 3 + y) % 256).astype(np.uint8)


def _file(tmp_path: Path, pixels: np.ndarray, spec: DicomSpec, name: str = "x.dcm") -> Path:
    path = tmp_path / name
    write_dicom(path, pixels, spec)
    return path


@pytest.mark.parametrize("case", REFUSED)
def test_a_header_that_is_not_a_chest_radiograph_is_one_error_line(case, pixels, tmp_path):
    spec, message = REFUSED[case]
    path = _file(tmp_path, pixels, spec)
    with pytest.raises(DicomError) as exc:
        open_dicom(path)
    assert str(exc.value) == message
    assert "\n" not in message


def test_the_header_is_judged_before_any_pixel_is_decoded(pixels, tmp_path, monkeypatch):
    path = _file(tmp_path, pixels, REFUSED["ct"][0])

    def decoded(*args: object) -> None:
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(training.data.dicom, "_frame", decoded)
    with pytest.raises(DicomError, match="Modality CT"):
        open_dicom(path)


@pytest.mark.parametrize(
    "spec",
    [
        DicomSpec(modality="OT", sop_class_uid=SC_STORAGE, body_part="CHEST", view_position="PA"),
        DicomSpec(modality="CT", sop_class_uid=CT_STORAGE, body_part="THORAX", view_position="AP"),
        DicomSpec(sop_class="CR", modality="OT", body_part="PORT CHEST", view_position="AP"),
    ],
    ids=["secondary-capture", "ct-tagged", "cr-port-chest"],
)
def test_a_frontal_chest_is_scored_whatever_its_modality_and_class(spec, pixels, tmp_path):
    with open_dicom(_file(tmp_path, pixels, spec)) as img:
        assert np.array_equal(np.asarray(img), pixels)
        assert img.info["dicom"].flags == ()


def test_a_file_without_the_tags_reads_as_before(pixels, tmp_path) -> None:
    plain = _file(tmp_path, pixels, TAGLESS, "plain.dcm")
    ds = pydicom.dcmread(plain)
    assert not {"Modality", "SOPClassUID", "BodyPartExamined", "ViewPosition"} & set(ds.dir())
    with open_dicom(plain) as img:
        header = img.info["dicom"]
        assert np.array_equal(np.asarray(img), pixels)
    assert (header.body_part, header.view_position, header.flags) == (None, None, ())
    assert header.patient_id == "P-0001" and header.sop_instance_uid == ds.SOPInstanceUID
    chest = _file(tmp_path, pixels, DicomSpec(), "chest.dcm")
    assert decode_image(plain, 32).equal(decode_image(chest, 32))


@pytest.mark.parametrize(
    ("body_part", "view", "flags"),
    [
        ("KNEE", "PA", ("not-cxr",)),
        ("CHEST", "LL", ("lateral",)),
        ("CHEST", "RL", ("lateral",)),
        ("CHEST", "LATERAL", ("lateral",)),
        ("ABDOMEN", "LL", ("not-cxr", "lateral")),
        ("CHEST", "PA", ()),
        (None, "AP", ()),
    ],
)
def test_a_scored_header_raises_its_flags(body_part, view, flags, pixels, tmp_path) -> None:
    spec = DicomSpec(body_part=body_part, view_position=view)
    with open_dicom(_file(tmp_path, pixels, spec)) as img:
        header = img.info["dicom"]
    assert (header.body_part, header.view_position) == (body_part, view)
    assert header.flags == flags


@pytest.mark.parametrize(
    ("body_part", "view", "flags"),
    [
        ("chest", None, ()),
        ("PORT_CHEST", None, ()),
        ("Chest-PA", None, ()),
        ("thorax  ap", None, ()),
        ("LUNGS", None, ()),
        ("TORAX", None, ()),
        ("TORSO", None, ("not-cxr",)),
        ("RIBS", None, ("not-cxr",)),
        ("", None, ()),  # an empty tag is an absent one (the reader passes None)
        (None, "lat", ("lateral",)),
        (None, "Left_Lateral", ("lateral",)),
        (None, "LLD", ()),  # decubitus: a frontal beam on a patient lying on one side
        (None, "RLO", ()),
    ],
)
def test_flags_read_the_words_not_the_spelling(body_part, view, flags) -> None:
    assert header_flags(body_part or None, view) == flags
    assert set(flags) <= set(HEADER_REASONS)


def test_chest_words_are_whole_words() -> None:
    assert is_chest("CHEST LAT") and is_chest("PORTABLE CHEST")
    assert not is_chest("CHESTNUT") and not is_chest(None) and not is_chest("TSPINE")


def test_a_batch_gives_each_refusal_as_its_error(pixels, tmp_path) -> None:
    """Through the decode scoring uses: reasons by position, the rest decoded with headers."""
    specs = {
        "chest.dcm": DicomSpec(),
        "ct.dcm": REFUSED["ct"][0],
        "raw.dcm": REFUSED["for-processing"][0],
        "knee.dcm": DicomSpec(body_part="KNEE", view_position="LATERAL"),
        "mammo.dcm": REFUSED["mg"][0],
    }
    paths = [_file(tmp_path, pixels, spec, name) for name, spec in specs.items()]
    batch = decode_many(paths, 32, threads=2)
    assert batch.ok_index == [0, 3]
    assert batch.errors == {
        1: "not a radiograph: Modality CT",
        2: FOR_PROCESSING,
        4: "not a chest radiograph: Modality MG (mammography)",
    }
    assert batch.headers[0].flags == () and batch.headers[3].flags == ("not-cxr", "lateral")


@pytest.mark.parametrize("sop_class", ["DX", "CR"])
def test_a_chest_twin_is_a_complete_instance(sop_class, pixels, tmp_path) -> None:
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    path = tmp_path / "twin.dcm"
    chest_twin(path, pixels, study, series, "1.2.3.4.5", sop_class=sop_class, view_position="AP")
    ds = pydicom.dcmread(path)
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (study, series)
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"
    assert ds.Modality == sop_class
    assert (
        ds.SOPClassUID.name
        == {
            "DX": "Digital X-Ray Image Storage - For Presentation",
            "CR": "Computed Radiography Image Storage",
        }[sop_class]
    )
    assert ds.get("PresentationIntentType") == ("FOR PRESENTATION" if sop_class == "DX" else None)
    assert (ds.BodyPartExamined, ds.ViewPosition) == ("CHEST", "AP")
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
        "AccessionNumber", "ReferringPhysicianName", "StudyID", "SeriesNumber", "InstanceNumber",
        "ImageType", "Manufacturer", "PatientOrientation",
    ):  # fmt: skip
        assert keyword in ds, keyword
    assert np.array_equal(np.asarray(open_dicom(path)), pixels)
    with pytest.raises(ValueError, match="PA or AP"):
        chest_twin(tmp_path / "lat.dcm", pixels, view_position="LL")


def test_twins_get_new_uids_unless_given(pixels, tmp_path) -> None:
    a, b = (chest_twin(tmp_path / f"{name}.dcm", pixels) for name in "ab")
    assert a.StudyInstanceUID != b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


def test_highdicom_builds_a_secondary_capture_from_a_twin(pixels, tmp_path) -> None:
    hd = pytest.importorskip("highdicom")
    chest_twin(tmp_path / "twin.dcm", pixels, sop_class="CR")
    ref = pydicom.dcmread(tmp_path / "twin.dcm")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=np.zeros((64, 64, 3), np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        series_number=100,
        instance_number=1,
        manufacturer="cxrq",
        patient_orientation=("L", "F"),
    )
    assert (sc.StudyInstanceUID, sc.PatientID) == (ref.StudyInstanceUID, ref.PatientID)
    assert (str(sc.StudyDate), sc.AccessionNumber) == (ref.StudyDate, ref.AccessionNumber)
