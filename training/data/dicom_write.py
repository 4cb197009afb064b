"""Writing a grayscale radiograph as a DICOM file, in the encodings hospitals send.

The tests and the DICOM benchmark build their DICOMs from the shared JPEGs with this, so every
case (MONOCHROME1/2, 8-16 bits, rescale, window, VOI LUT, JPEG baseline, JPEG 2000, RLE) is made
from pixels whose true display values are known.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
ENCODINGS = ("explicit", "jpeg-baseline", "jpeg2000", "rle")


@dataclass(frozen=True)
class DicomSpec:
    """How to store the display values: `bits` stored, MONOCHROME1 or 2, a rescale the stored
    values undo, a window or a VOI LUT (`voi_gamma`: stored = gamma-encoded display, the LUT
    decodes it), the patient and the encoding."""

    bits: int = 8
    monochrome1: bool = False
    rescale: tuple[float, float] | None = None  # (slope, intercept)
    window: bool = False
    voi_gamma: float | None = None
    signed: bool = False  # stored as two's complement, the range centred on zero
    patient_id: str | None = "P-0001"
    encoding: str = "explicit"
    preamble: bool = True


def write_dicom(path: str | os.PathLike, display: np.ndarray, spec: DicomSpec) -> None:
    """Store 8-bit display values (H, W) so that the display chain of training.data.dicom gives them
    back: exactly for lossless encodings without a VOI LUT, within rounding otherwise."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if spec.encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {spec.encoding!r}")
    stored = _stored_values(display.astype(np.float64) / 255.0, spec)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_STORAGE
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.PatientName, ds.PatientBirthDate = "DX", "Doe^Jane", "20200101"
    if spec.patient_id is not None:
        ds.PatientID = spec.patient_id
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
