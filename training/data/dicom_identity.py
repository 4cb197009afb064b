"""What a prediction row may keep of a DICOM header: the SOP Instance UID and a salted hash of
the PatientID, never a name, birth date or ID; and the PatientID that patient-level splits use.

    identity_of(img.info["dicom"], salt)   # from the header a decode already read
    identity(path, salt)                   # reading the header (a file that did not decode)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from training.data.dicom import DicomHeader, header_of, header_text, is_dicom, read_dataset

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class DicomIdentity:
    """What a prediction row may keep of a DICOM header: never a name, birth date or ID."""

    sop_instance_uid: str | None
    patient_hash: str | None  # keyed hash of PatientID; None without a salt or a PatientID


def header_patient_id(path: str | os.PathLike) -> str | None:
    """PatientID from the header, stripped; None when absent or empty."""
    ds = _header(path)
    return None if ds is None else header_text(ds, "PatientID")


def identity_of(header: DicomHeader, salt: str | None) -> DicomIdentity:
    """The identity a row keeps of a header; the salt is the deployment's (CXRQ_PATIENT_SALT,
    read by the caller); None: no hash."""
    patient = header.patient_id
    return DicomIdentity(header.sop_instance_uid, patient and patient_hash(patient, salt))


def identity(path: str | os.PathLike, salt: str | None) -> DicomIdentity | None:
    """The SOP Instance UID and salted patient hash of a DICOM file; None for other files."""
    if not is_dicom(path):
        return None
    ds = _header(path)
    return DicomIdentity(None, None) if ds is None else identity_of(header_of(ds), salt)


def patient_hash(patient_id: str, salt: str | None) -> str | None:
    """HMAC-SHA256 of the ID keyed by the salt, 32 hex digits; None without a salt, because an
    unsalted hash of a short hospital number is undone by trying them all."""
    if not salt:
        return None
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:32]


def _header(path: str | os.PathLike) -> Dataset | None:
    try:
        return read_dataset(path, header_only=True)
    except Exception:  # any failure to read a header leaves the row without an identity
        return None
