"""Writing a grayscale radiograph as a DICOM file, in the encodings hospitals send.

The tests and the DICOM benchmark build their DICOMs from the shared JPEGs with this, so every
case (MONOCHROME1/2, 8-16 bits, rescale, window, VOI LUT, JPEG baseline, JPEG 2000, RLE) is made
from pixels whose true display values are known. Each file is a complete instance (a DX or CR
chest PA unless its spec says otherwise), so it can also be sent to a DICOM node:

    chest_twin("x.dcm", pixels, study_uid=study)      # DX For Presentation, chest PA
    write_dicom("ct.dcm", pixels, DicomSpec(modality="CT", body_part=None))  # for the rules
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from training.data.dicom_rules import CR_STORAGE, DX_STORAGE

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

AUTO = "auto"  # a DicomSpec tag that follows its SOP class
SOP_CLASSES = {"DX": DX_STORAGE, "CR": CR_STORAGE}
ENCODINGS = ("explicit", "jpeg-baseline", "jpeg2000", "rle")
# SNOMED CT "Chest", the code PS3.16 Annex L gives BodyPartExamined CHEST.
CHEST_REGION = ("43799004", "SCT", "Chest")


@dataclass(frozen=True)
class DicomSpec:
    """How to store the display values: `bits` stored, MONOCHROME1 or 2, a rescale the stored
    values undo, a window or a VOI LUT (`voi_gamma`: stored = gamma-encoded display, the LUT
    decodes it), the patient and the encoding; and the instance around them, by default a
    complete DX For Presentation chest PA (`sop_class` "CR": a CR one).

    Header tags the rules read (training.data.dicom_rules) can be set to anything: `modality`,
    `sop_class_uid` and `presentation_intent` follow the SOP class while AUTO; None leaves a
    tag out. Generated UIDs are new for every file unless given."""

    bits: int = 8
    monochrome1: bool = False
    rescale: tuple[float, float] | None = None  # (slope, intercept)
    window: bool = False
    voi_gamma: float | None = None
    signed: bool = False  # stored as two's complement, the range centred on zero
    patient_id: str | None = "P-0001"
    encoding: str = "explicit"
    preamble: bool = True
    sop_class: str = "DX"  # "DX" (Digital X-Ray For Presentation) or "CR"
    modality: str | None = AUTO
    sop_class_uid: str | None = AUTO
    presentation_intent: str | None = AUTO  # DX: FOR PRESENTATION; CR has no such tag
    body_part: str | None = "CHEST"
    view_position: str | None = "PA"
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    patient_name: str = "Doe^Jane"
    patient_birth_date: str = "20200101"
    patient_sex: str = "F"
    study_date: str = "20240105"
    study_time: str = "093000"
    accession_number: str = "A0001"
    study_id: str = "1"
    series_number: int = 1
    instance_number: int = 1


def write_dicom(path: str | os.PathLike, display: np.ndarray, spec: DicomSpec) -> Dataset:
    """Store 8-bit display values (H, W) so that the display chain of training.data.dicom gives them
    back: exactly for lossless encodings without a VOI LUT, within rounding otherwise. Returns
    the data set written."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    if spec.encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {spec.encoding!r}")
    if spec.sop_class not in SOP_CLASSES:
        raise ValueError(f"sop_class must be one of {tuple(SOP_CLASSES)}, got {spec.sop_class!r}")
    stored = _stored_values(display.astype(np.float64) / 255.0, spec)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    _instance_tags(ds, spec)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, int(spec.signed)
    ds.PhotometricInterpretation = "MONOCHROME1" if spec.monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 8 if spec.bits <= 8 else 16
    ds.BitsStored, ds.HighBit = spec.bits, spec.bits - 1
    _display_tags(ds, spec)
    if spec.signed:
        stored = stored - 2 ** (spec.bits - 1)
    dtype = (np.int8 if spec.bits <= 8 else np.int16) if spec.signed else None
    dtype = dtype or (np.uint8 if spec.bits <= 8 else np.uint16)
    ds.PixelData = stored.astype(dtype).tobytes()
    _encode(ds, stored, spec.encoding)
    ds.save_as(path, enforce_file_format=spec.preamble)
    return ds


def chest_twin(
    path: str | os.PathLike,
    display: np.ndarray,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    sop_class: str = "DX",
    view_position: str = "PA",
    **spec: Any,
) -> Dataset:
    """A complete CR or DX (For Presentation) chest PA or AP instance of the display values,
    fit to send over the network and to build SR and secondary captures from: patient, study,
    series, equipment, image and SOP common modules. `spec`: other DicomSpec fields (patient,
    dates, numbers, bits, encoding)."""
    if view_position not in ("PA", "AP"):
        raise ValueError(f"a chest twin is seen PA or AP, not {view_position!r}")
    fields = {"study_uid": study_uid, "series_uid": series_uid, "sop_uid": sop_uid}
    chest = DicomSpec(sop_class=sop_class, body_part="CHEST", view_position=view_position)
    return write_dicom(path, display, replace(chest, **fields, **spec))


def _instance_tags(ds: Dataset, spec: DicomSpec) -> None:
    """SOP common, patient and general study modules, then the series and image's own tags."""
    from pydicom.uid import generate_uid

    sop_class = SOP_CLASSES[spec.sop_class]
    uid = _chosen(spec.sop_class_uid, sop_class)
    ds.file_meta.MediaStorageSOPClassUID = uid or sop_class
    _put(ds, "SOPClassUID", uid)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = spec.sop_uid or generate_uid()
    ds.PatientName, ds.PatientBirthDate = spec.patient_name, spec.patient_birth_date
    if spec.patient_id is not None:
        ds.PatientID = spec.patient_id
    ds.PatientSex = spec.patient_sex
    ds.StudyInstanceUID = spec.study_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = spec.study_date, spec.study_time
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber, ds.StudyID = spec.accession_number, spec.study_id
    _series_tags(ds, spec)
    if spec.sop_class == "DX":
        _dx_tags(ds, spec)


def _series_tags(ds: Dataset, spec: DicomSpec) -> None:
    """General series, equipment and image modules, and the tags the rules read."""
    from pydicom.uid import generate_uid

    _put(ds, "Modality", _chosen(spec.modality, spec.sop_class))
    ds.SeriesInstanceUID = spec.series_uid or generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = spec.series_number, spec.instance_number
    ds.Manufacturer = "cxrq"
    intent = "FOR PRESENTATION" if spec.sop_class == "DX" else None
    _put(ds, "PresentationIntentType", _chosen(spec.presentation_intent, intent))
    _put(ds, "BodyPartExamined", spec.body_part)
    _put(ds, "ViewPosition", spec.view_position)
    ds.ContentDate, ds.ContentTime = spec.study_date, spec.study_time
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]  # PA and AP are both shown as if facing the patient


def _dx_tags(ds: Dataset, spec: DicomSpec) -> None:
    """What the DX anatomy, image and detector modules require beside the pixels (PS3.3
    C.8.11)."""
    ds.ImageLaterality = "U"  # unpaired: the chest is one part
    if spec.body_part == "CHEST":
        ds.AnatomicRegionSequence = [_code(*CHEST_REGION)]
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.PresentationLUTShape = "INVERSE" if spec.monochrome1 else "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    # Required for DX; the identity unless _display_tags stores a rescale in its place.
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.LossyImageCompression = "01" if spec.encoding == "jpeg-baseline" else "00"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.DetectorType = "SCINTILLATOR"


def _chosen(value: str | None, automatic: str | None) -> str | None:
    """A spec's tag value: AUTO -> `automatic`; None -> no tag."""
    return automatic if value == AUTO else value


def _put(ds: Dataset, keyword: str, value: str | None) -> None:
    if value is not None:
        setattr(ds, keyword, value)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _stored_values(unit: np.ndarray, spec: DicomSpec) -> np.ndarray:
    """Stored integers whose display chain gives `unit` (0-1) back."""
    top = 2**spec.bits - 1
    shown = 1.0 - unit if spec.monochrome1 else unit
    if spec.voi_gamma is not None:
        shown = shown**spec.voi_gamma
    # A rescale or window maps the full stored range to the full display range, so the
    # stored values are the same; only the tags that say so differ.
    return np.rint(shown * top).astype(np.int64)


def _display_tags(ds: Dataset, spec: DicomSpec) -> None:
    from pydicom.dataset import Dataset

    top = 2**spec.bits - 1
    slope, intercept = spec.rescale or (1.0, 0.0)
    if spec.rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if spec.window:
        low, high = intercept, intercept + slope * top
        # LINEAR: low -> 0 and high -> 1 when the width is high - low + 1, centre + 0.5.
        ds.WindowCenter, ds.WindowWidth = (low + high) / 2 + 0.5, high - low + 1
    if spec.voi_gamma is not None:
        item = Dataset()
        codes = np.arange(int(intercept), int(intercept + slope * top) + 1)
        table = np.rint(65535 * ((codes - intercept) / (slope * top)) ** (1 / spec.voi_gamma))
        item.LUTDescriptor = [len(codes) % 65536, int(intercept), 16]
        item.LUTData = table.astype("<u2").tobytes()
        ds.VOILUTSequence = [item]


def _encode(ds: Dataset, stored: np.ndarray, encoding: str) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    if encoding == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif encoding == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    elif encoding == "jpeg-baseline":
        if ds.BitsStored != 8:
            raise ValueError("JPEG baseline holds 8-bit pixels only")
        buf = io.BytesIO()
        Image.fromarray(stored.astype(np.uint8), "L").save(buf, format="JPEG", quality=95)
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
