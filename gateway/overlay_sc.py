"""The heatmap of one scored X-ray as a DICOM secondary capture in the source's study.

    pixels = heatmap_overlay(spooled_path, heatmap_row)   # (H, W, 3) uint8, the source's size
    sc = build_sc(source, pixels, answer, instance_number=1)

The picture is the one `cxrq report heatmap` draws (training.explain.overlay.render_overlay:
the X-ray at its own resolution, the heatmap blended over what the model saw, the hottest
region boxed), so the annotation is burned into the pixels: BurnedInAnnotation YES.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from highdicom import ContributingEquipment
from highdicom import sc as hsc
from highdicom.sr.coding import CodedConcept
from highdicom.valuerep import check_person_name
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from gateway.result_uids import (
    pin_times,
    result_times,
    result_uid,
    series_number,
    source_header,
)

if TYPE_CHECKING:
    from gateway.results import Answer

MANUFACTURER = "cxrq"
# PatientOrientation values highdicom's constructor accepts; the source's own value, which may
# be compound ("AL") or absent, replaces it after construction.
_ANY_ORIENTATION = ("L", "F")


class HeatmapRow(Protocol):
    """What overlay drawing needs of a db.schema.Heatmap row."""

    grid: bytes
    height: int
    width: int
    crop: float


def overlay_pixels(
    source_path: str | os.PathLike,
    grid: npt.ArrayLike,
    height: int,
    width: int,
    crop: float,
) -> np.ndarray:
    """The heatmap overlay of the image at `source_path` as an (H, W, 3) uint8 RGB array at the
    image's own size: exactly the picture render_overlay saves, drawn in memory (PNG is
    lossless, so the pixels are the same). Errors are render_overlay's HeatmapImageError."""
    from PIL import Image

    from training.explain.overlay import render_overlay

    buffer = io.BytesIO()
    render_overlay(source_path, grid, height, width, crop, buffer)
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def heatmap_overlay(source_path: str | os.PathLike, heatmap: HeatmapRow) -> np.ndarray:
    """overlay_pixels for a stored heatmap row (its float16 grid decoded first)."""
    from training.explain.grid import decode_grid

    grid = decode_grid(heatmap.grid, heatmap.height, heatmap.width)
    return overlay_pixels(source_path, grid, heatmap.height, heatmap.width, heatmap.crop)


def build_sc(source: Dataset, overlay: np.ndarray, answer: Answer, instance_number: int) -> Dataset:
    """The secondary capture of `overlay` (the source's heatmap picture, (Rows, Columns, 3)
    uint8 RGB) in the source's study: DERIVED\\SECONDARY, BurnedInAnnotation YES, the source
    in its SourceImageSequence, patient and study attributes copied from the source.

    Its SOP Instance UID is result_uid(source SOP UID, job, "sc") and its series the job's SC
    series of the study: building it again gives the same object (byte for byte when
    `answer.scored_at` is set). An error row has no heatmap: ValueError."""
    if answer.prob is None:
        raise ValueError(f"job {answer.job_id}: an error row has no heatmap to send")
    header = source_header(source)
    pixels = _checked_overlay(overlay, header)
    sc = hsc.SCImage(
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=header.StudyInstanceUID,
        series_instance_uid=result_uid(header.StudyInstanceUID, answer.job_id, "sc-series"),
        series_number=series_number(answer.job_id, "sc-series"),
        sop_instance_uid=result_uid(header.SOPInstanceUID, answer.job_id, "sc"),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER,
        series_description="cxrq pneumonia heatmap (unverified)",
        patient_id=header.PatientID,
        patient_name=_checked_name(header.PatientName),
        patient_birth_date=header.PatientBirthDate,
        patient_sex=header.PatientSex,
        accession_number=header.AccessionNumber,
        study_id=header.StudyID,
        study_date=header.StudyDate,
        study_time=header.StudyTime,
        referring_physician_name=_checked_name(header.ReferringPhysicianName),
        patient_orientation=_ANY_ORIENTATION,
        pixel_spacing=_pixel_spacing(header),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set=header.get("SpecificCharacterSet"),
        contributing_equipment=_acquisition_equipment(header),
        **result_times(answer.scored_at),
    )
    # The rest of the source's Patient and Study modules (and names exactly as the source
    # spells them), as highdicom's SR does for its evidence.
    sc.copy_patient_and_study_information(header)
    # Same pixel grid as the source, so the source's orientation is the overlay's.
    sc.PatientOrientation = header.get("PatientOrientation", "")
    sc.BurnedInAnnotation = "YES"
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [
        CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
    ]
    sc.SourceImageSequence = [reference]
    sc.DerivationDescription = (
        f"Heatmap of P(pneumonia) = {answer.prob:.3f} ({answer.label}) from cxrq model "
        f"{answer.model_id} ({answer.model_name}), hottest region boxed. Unverified machine "
        "result, not a diagnosis."
    )[:1024]
    pin_times(sc, answer.scored_at)
    return sc


def _acquisition_equipment(header: Dataset) -> list[ContributingEquipment]:
    """The source's acquisition equipment, as highdicom records it for an SR's evidence (none
    when the source does not name its manufacturer)."""
    try:
        return [ContributingEquipment.for_image_acquisition(header)]
    except (AttributeError, ValueError, KeyError):
        return []


def _checked_overlay(overlay: np.ndarray, header: Dataset) -> np.ndarray:
    pixels = np.asarray(overlay)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"an overlay is an (H, W, 3) uint8 RGB array, got {pixels.dtype} {pixels.shape}"
        )
    rows, columns = header.get("Rows"), header.get("Columns")
    if rows is not None and columns is not None and pixels.shape[:2] != (rows, columns):
        raise ValueError(
            f"overlay is {pixels.shape[0]} x {pixels.shape[1]} pixels but the source is "
            f"{rows} x {columns}: draw it at the image's own size (overlay_pixels)"
        )
    return np.ascontiguousarray(pixels)


def _checked_name(name: Any) -> str | None:
    """A person name highdicom's check passes quietly, else None: the source's own spelling
    is copied afterwards with the Patient and Study modules (a name without a caret, such as
    ANONYMOUS, is legal DICOM that the check warns about or refuses)."""
    if not name:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            check_person_name(name)
        except (ValueError, TypeError, UserWarning):
            return None
    return name


def _pixel_spacing(header: Dataset) -> tuple[float, float] | None:
    spacing = header.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        return None
    return float(spacing[0]), float(spacing[1])
