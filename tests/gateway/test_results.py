"""A scored X-ray's answer as DICOM: the SR and the secondary capture, built from a chest DX
source written here, round-tripped through files and read back."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    EnhancedSRStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from gateway.report_sr import PNEUMONIA
from gateway.results import (
    Answer,
    build_sc,
    build_sr,
    device_uid,
    heatmap_overlay,
    overlay_pixels,
    result_uid,
    sr_facts,
    sr_mismatches,
    write_results,
)
from gateway.sr_facts import ANSWER_FACTS

ROOT = Path(__file__).resolve().parents[2]
SIDE = 64
STUDY_UID = "1.2.826.0.1.3680043.8.498.1000001"
SCORED_AT = datetime(2024, 3, 5, 14, 30, 15)


def chest_source(path: Path, sop_uid: str | None = None, **header: object) -> Dataset:
    """A complete DX For Presentation chest PA instance, 64x64 MONOCHROME2 12 of 16 bits,
    written to `path` and read back (as the outbox reads a spooled file)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P-123"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = STUDY_UID
    ds.StudyDate = "20240305"
    ds.StudyTime = "101500"
    ds.StudyID = "S1"
    ds.AccessionNumber = "ACC-9"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1000002"
    ds.SeriesNumber = 1
    ds.Modality = "DX"
    ds.Manufacturer = "Acme"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    ds.PixelData = ((xx * 37 + yy * 11) % 4096).astype("<u2").tobytes()
    for keyword, value in header.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    dcmwrite(path, ds, enforce_file_format=True)
    return dcmread(path)


def answer(**changes: object) -> Answer:
    base = Answer(
        job_id=41,
        prob=0.8734567890123457,
        label="PNEUMONIA",
        threshold=0.61,
        threshold_source="site ward7 (profile 3)",
        kind="VIRAL",
        prob_viral=0.712,
        review_reasons=("low-confidence", "lateral"),
        error=None,
        model_id=3,
        model_name="resnet50-default",
        model_arch="resnet50",
        weights_sha256="0123456789abcdef" * 4,
        site="ward7",
        site_profile_id=3,
        scored_at=SCORED_AT,
    )
    return replace(base, **changes)


NORMAL = dict(
    prob=0.12,
    label="NORMAL",
    kind=None,
    prob_viral=None,
    review_reasons=("not-cxr",),
    threshold_source="training split (balanced rule on 419 tuning images)",
    site=None,
    site_profile_id=None,
)


@pytest.fixture()
def source(tmp_path: Path) -> Dataset:
    return chest_source(tmp_path / "source.dcm")


def round_trip(ds: Dataset, folder: Path) -> Dataset:
    (path,) = write_results([ds], folder)
    assert path.name == f"{ds.SOPInstanceUID}.dcm"
    return dcmread(path)


def test_sr_is_an_enhanced_sr_in_the_source_study(source: Dataset, tmp_path: Path) -> None:
    sr = round_trip(build_sr(source, answer(), instance_number=1), tmp_path / "out")
    assert sr.SOPClassUID == EnhancedSRStorage
    assert sr.file_meta.MediaStorageSOPClassUID == EnhancedSRStorage
    assert sr.Modality == "SR"
    for keyword in (
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "ReferringPhysicianName",
        "StudyDescription",
    ):
        assert sr[keyword].value == source[keyword].value, keyword
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SeriesInstanceUID == result_uid(STUDY_UID, 41, "sr-series")
    assert sr.SOPInstanceUID == result_uid(source.SOPInstanceUID, 41, "sr")
    assert sr.VerificationFlag == "UNVERIFIED"
    assert sr.PreliminaryFlag == "PRELIMINARY"
    assert "VerifyingObserverSequence" not in sr
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == STUDY_UID
    referenced = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert referenced.ReferencedSOPClassUID == source.SOPClassUID


def test_sr_measurement_group_refers_to_the_source_image(source: Dataset, tmp_path: Path) -> None:
    import highdicom as hd

    sr = hd.sr.srread(write_results([build_sr(source, answer(), 1)], tmp_path)[0])
    assert isinstance(sr, hd.sr.EnhancedSR)
    (group,) = sr.content.get_image_measurement_groups(
        finding_type=PNEUMONIA, referenced_sop_instance_uid=source.SOPInstanceUID
    )
    assert group.tracking_uid == result_uid(source.SOPInstanceUID, 41, "finding")
    (observer,) = sr.content.get_observer_contexts()
    attributes = observer.observer_identifying_attributes
    assert attributes.uid == device_uid(3, "0123456789abcdef" * 4)
    assert attributes.manufacturer_name == "cxrq"
    assert attributes.name == "resnet50-default"


@pytest.mark.parametrize(
    "changes",
    [{}, NORMAL, {"kind": "BACTERIAL", "prob_viral": 0.1, "review_reasons": ()}],
    ids=["pneumonia-viral", "normal", "pneumonia-bacterial-no-review"],
)
def test_sr_facts_read_back_equal_the_answer(
    source: Dataset, tmp_path: Path, changes: dict
) -> None:
    row = answer(**changes)
    facts = sr_facts(round_trip(build_sr(source, row, 1), tmp_path))
    for name in ANSWER_FACTS:
        assert facts[name] == getattr(row, name), name
    assert facts["source_sop_instance_uid"] == source.SOPInstanceUID
    assert facts["review"] is bool(row.review_reasons)
    assert facts["verified"] is False


def test_sr_says_pneumonia_present_or_absent_with_its_kind(source: Dataset) -> None:
    pneumonia = sr_facts(build_sr(source, answer(), 1))
    assert (pneumonia["label"], pneumonia["kind"]) == ("PNEUMONIA", "VIRAL")
    assert pneumonia["review_reasons"] == ("low-confidence", "lateral")
    normal = sr_facts(build_sr(source, answer(**NORMAL), 1))
    assert (normal["label"], normal["kind"], normal["prob_viral"]) == ("NORMAL", None, None)
    assert normal["review_reasons"] == ("not-cxr",)


def test_sr_states_it_is_an_unverified_machine_result(source: Dataset) -> None:
    from highdicom.sr.utils import find_content_items
    from pydicom.sr.codedict import codes

    sr = build_sr(source, answer(), 1)
    (comment,) = find_content_items(sr, name=codes.DCM.Comment, recursive=True)
    assert comment.TextValue.startswith("Unverified machine result")
    assert "99CXRQ" in [
        item.CodingSchemeDesignator for item in sr.CodingSchemeIdentificationSequence
    ]


def test_sr_mismatches_name_what_differs_from_the_row(source: Dataset) -> None:
    sr = build_sr(source, answer(), 1)
    assert sr_mismatches(sr, answer()) == []
    assert sr_mismatches(sr, answer(prob=0.2)) == ["prob"]
    assert sr_mismatches(sr, answer(label="NORMAL", review_reasons=())) == [
        "label",
        "review_reasons",
    ]


def test_result_uids_are_deterministic(source: Dataset, tmp_path: Path) -> None:
    first, again = build_sr(source, answer(), 1), build_sr(source, answer(), 1)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.SeriesInstanceUID == again.SeriesInstanceUID
    other_job = build_sr(source, answer(job_id=42), 1)
    assert other_job.SOPInstanceUID != first.SOPInstanceUID
    assert other_job.SeriesInstanceUID != first.SeriesInstanceUID
    # Another image of the same study, same job: its own SR in the same series.
    sibling = build_sr(chest_source(tmp_path / "lateral.dcm", ViewPosition="LL"), answer(), 2)
    assert sibling.SeriesInstanceUID == first.SeriesInstanceUID
    assert sibling.SOPInstanceUID != first.SOPInstanceUID
    assert result_uid(source.SOPInstanceUID, 41, "sr") != result_uid(
        source.SOPInstanceUID, 41, "sc"
    )
    assert result_uid(STUDY_UID, 41, "sr-series") != result_uid(STUDY_UID, 41, "sc-series")
    assert len(first.SOPInstanceUID) <= 64


def test_same_answer_gives_the_same_bytes(source: Dataset) -> None:
    def encoded(ds: Dataset) -> bytes:
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()

    assert encoded(build_sr(source, answer(), 1)) == encoded(build_sr(source, answer(), 1))
    pixels = np.zeros((SIDE, SIDE, 3), np.uint8)
    assert encoded(build_sc(source, pixels, answer(), 1)) == encoded(
        build_sc(source, pixels, answer(), 1)
    )


def test_result_uid_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown result kind"):
        result_uid("1.2.3", 1, "report")


def test_error_answer_gets_no_sr_and_no_sc(source: Dataset) -> None:
    failed = answer(prob=None, label=None, kind=None, prob_viral=None, error="cannot decode")
    with pytest.raises(ValueError, match="error row"):
        build_sr(source, failed, 1)
    with pytest.raises(ValueError, match="error row"):
        build_sc(source, np.zeros((SIDE, SIDE, 3), np.uint8), failed, 1)


def test_sc_is_the_overlay_in_the_source_study(tmp_path: Path) -> None:
    path = tmp_path / "source.dcm"
    source = chest_source(path)
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = 1.0
    overlay = overlay_pixels(path, grid, 4, 4, 0.9)
    assert overlay.shape == (SIDE, SIDE, 3) and overlay.dtype == np.uint8
    sc = round_trip(build_sc(source, overlay, answer(), instance_number=1), tmp_path / "out")
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert sc.BurnedInAnnotation == "YES"
    assert sc.PhotometricInterpretation == "RGB"
    assert sc.pixel_array.shape == (SIDE, SIDE, 3)
    np.testing.assert_array_equal(sc.pixel_array, overlay)
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
        assert sc[keyword].value == source[keyword].value, keyword
    assert list(sc.PatientOrientation) == ["L", "F"]
    reference = sc.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == source.SOPClassUID
    assert sc.SOPInstanceUID == result_uid(source.SOPInstanceUID, 41, "sc")
    assert sc.SeriesInstanceUID == result_uid(STUDY_UID, 41, "sc-series")
    assert "Unverified machine result" in sc.DerivationDescription


def test_overlay_pixels_are_the_picture_render_overlay_saves(tmp_path: Path) -> None:
    from training.explain.grid import encode_grid
    from training.explain.overlay import render_overlay

    path = tmp_path / "source.dcm"
    chest_source(path)
    grid = (np.arange(16, dtype=np.float32) / 16).reshape(4, 4)  # exact in float16
    render_overlay(path, grid, 4, 4, 0.875, tmp_path / "overlay.png")
    with Image.open(tmp_path / "overlay.png") as saved:
        expected = np.asarray(saved.convert("RGB"))
    np.testing.assert_array_equal(overlay_pixels(path, grid, 4, 4, 0.875), expected)
    row = SimpleNamespace(grid=encode_grid(grid), height=4, width=4, crop=0.875)
    np.testing.assert_array_equal(heatmap_overlay(path, row), expected)


def test_sc_refuses_an_overlay_of_another_size(source: Dataset) -> None:
    with pytest.raises(ValueError, match="own size"):
        build_sc(source, np.zeros((SIDE, SIDE + 1, 3), np.uint8), answer(), 1)
    with pytest.raises(ValueError, match="uint8 RGB"):
        build_sc(source, np.zeros((SIDE, SIDE), np.uint8), answer(), 1)


def test_results_for_a_sparse_source_keep_its_identity_as_sent(tmp_path: Path) -> None:
    """A source without the optional type 2 attributes and with a caret-less name (legal
    DICOM that highdicom's name check refuses) still gets both results, name copied as is."""
    source = chest_source(
        tmp_path / "sparse.dcm",
        PatientName="ANONYMOUS",
        PatientBirthDate=None,
        AccessionNumber=None,
        ReferringPhysicianName=None,
        PatientOrientation=None,
        PatientSex="U",
    )
    sr = round_trip(build_sr(source, answer(), 1), tmp_path / "sr")
    sc = round_trip(build_sc(source, np.zeros((SIDE, SIDE, 3), np.uint8), answer(), 1), tmp_path)
    for result in (sr, sc):
        assert result.PatientName == "ANONYMOUS"
        assert result.PatientID == "P-123"
        assert result.StudyInstanceUID == STUDY_UID
    assert sr_facts(sr)["label"] == "PNEUMONIA"
    assert sc.PatientOrientation == ""


def test_results_modules_import_without_torch() -> None:
    code = "import sys, gateway.results; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
