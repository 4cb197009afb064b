"""Who a DICOM result is: deterministic UIDs, and what it inherits from its source image.

    result_uid(source.SOPInstanceUID, job_id, "sr")        # the SR about that source image
    result_uid(source.StudyInstanceUID, job_id, "sr-series")  # the job's SR series in the study

A result's UID is a hash of what it is about, so building it again (a resend, a retried
outbox entry) gives the same SOP instance, which a PACS stores once instead of twice.
"""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, DT, TM

# The namespace hashed into every UID: changing it would give every result a new identity.
NAMESPACE = "cxrq-result-v1"
# "finding": the tracking UID of the SR's measurement group (one per source image and job).
INSTANCE_KINDS = frozenset({"sr", "sc", "finding"})
SERIES_KINDS = frozenset({"sr-series", "sc-series"})
# Series numbers well above a modality's own (1, 2, ...): job N's SR series is 9_000_000 + 10N + 1.
_SERIES_BASE = 9_000_000
_SERIES_OFFSET = {"sr-series": 1, "sc-series": 2}


def result_uid(source_uid: str, job_id: int, what: str) -> str:
    """The UID of one result of job `job_id`: the same inputs always give the same UID.

    `what` is "sr" or "sc" (a SOP instance; `source_uid` is the source's SOP Instance UID),
    "finding" (the SR measurement group's tracking UID; `source_uid` as for "sr"), or
    "sr-series" / "sc-series" (a series; `source_uid` is the source's Study Instance UID, so
    every image of a study scored by one job lands in one SR series and one SC series)."""
    if what not in INSTANCE_KINDS | SERIES_KINDS:
        kinds = ", ".join(sorted(INSTANCE_KINDS | SERIES_KINDS))
        raise ValueError(f"unknown result kind {what!r}: expected one of {kinds}")
    if not source_uid:
        raise ValueError("a result UID needs the source's UID")
    return str(generate_uid(entropy_srcs=[NAMESPACE, what, str(source_uid), str(int(job_id))]))


def device_uid(model_id: int, weights_sha256: str) -> str:
    """The SR device observer's UID: one per model weights, whatever the job or image."""
    return str(generate_uid(entropy_srcs=[NAMESPACE, "device", str(int(model_id)), weights_sha256]))


def series_number(job_id: int, what: str) -> int:
    """The Series Number of the job's SR or SC series (deterministic, within IS's range)."""
    if what not in SERIES_KINDS:
        raise ValueError(f"not a series kind: {what!r}")
    return _SERIES_BASE + (int(job_id) % 100_000_000) * 10 + _SERIES_OFFSET[what]


# Type 2 attributes highdicom's constructors read from a source without a default: a source
# that leaves one out (legal for many senders) gets it empty rather than an AttributeError.
_INHERITED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_PATIENT_SEXES = ("M", "F", "O")


def source_header(source: Dataset) -> Dataset:
    """The source without its pixels, every attribute a result inherits present.

    Patient and study attributes are the only PHI a result carries, and they come from here:
    highdicom copies the source's Patient and Study modules from it. A Patient's Sex outside
    M/F/O (which highdicom refuses) is left empty."""
    header = Dataset()
    for element in source:
        if element.tag != 0x7FE00010:  # Pixel Data: a header is all a result needs
            header.add(element)
    for keyword in _INHERITED:
        if keyword not in header:
            setattr(header, keyword, None)
    if header.PatientSex not in (None, "", *_PATIENT_SEXES):
        header.PatientSex = None
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not header.get(keyword):
            raise ValueError(f"the source instance has no {keyword}: no result can refer to it")
    return header


def result_times(when: datetime | None) -> dict[str, object]:
    """highdicom constructor arguments that date a result's content and series at `when`
    (none when `when` is None: highdicom takes the clock)."""
    if when is None:
        return {}
    day, time = when.date(), when.time()
    return dict(content_date=day, content_time=time, series_date=day, series_time=time)


def pin_times(ds: Dataset, when: datetime | None) -> None:
    """Set the creation times highdicom stamps with the clock to `when`, so that a result built
    twice from the same answer is the same object byte for byte (nothing when `when` is None)."""
    if when is None:
        return
    ds.InstanceCreationDate = DA(when.date())
    ds.InstanceCreationTime = TM(when.time())
    for item in ds.get("ContributingEquipmentSequence", []):
        if item.get("ManufacturerModelName") == "highdicom" and "ContributionDateTime" in item:
            item.ContributionDateTime = DT(when)
    if "DateOfSecondaryCapture" in ds:
        ds.DateOfSecondaryCapture = DA(when.date())
        ds.TimeOfSecondaryCapture = TM(when.time())
