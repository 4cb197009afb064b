"""What a DICOM header says before any pixel is decoded: whether the file is a chest radiograph
cxrq may score at all, and which flags its answers carry when it is scored.

    refusal(ds)           # None, or the one-line reason the file becomes an error row
    check_header(ds)      # the same as a DicomError (training.data.dicom calls it)
    header_flags("KNEE", "LL")  # ("not-cxr", "lateral")

Rules, in order (a tag that is absent takes no part, so a file without them reads as before):
- Modality other than CR or DX: refused (MG, IO and PX are X-rays, but not of the chest);
- For Processing (the DX SOP class, or PresentationIntentType FOR PROCESSING): refused;
- SOPClassUID other than CR or DX For Presentation storage: refused;
- a header that says chest (BodyPartExamined) and frontal (ViewPosition PA or AP) is never
  refused by the Modality and SOP class rules: secondary captures and odd modality codes of a
  real chest film are common.
Flags: `not-cxr` when BodyPartExamined is not a chest; `lateral` for a lateral view.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from training.data.dicom_display import DicomError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"  # Digital X-Ray Image Storage - For Processing
RADIOGRAPH_SOP_CLASSES = frozenset({CR_STORAGE, DX_STORAGE})
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
# X-ray modalities that never show a chest, named in the refusal.
OTHER_XRAY = {"MG": "mammography", "IO": "intra-oral", "PX": "panoramic dental"}

# A BodyPartExamined is a chest when one of its words is one of these (after normalised()):
# CHEST, PORT CHEST, CHEST PA, CHEST_LAT, THORAX AP, LUNGS... TORAX is the Spanish and
# Portuguese spelling. TORSO, ABDOMEN or RIBS are not a chest film.
CHEST_WORDS = frozenset({"CHEST", "THORAX", "TORAX", "LUNG", "LUNGS", "CXR"})
FRONTAL_VIEWS = frozenset({"PA", "AP"})
# LL and RL are the standard's lateral terms; LAT and LATERAL are what some writers put there.
# Decubitus (LLD, RLD) and oblique (LLO, RLO) views are not flagged.
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LEFT LATERAL", "RIGHT LATERAL"})
HEADER_REASONS = ("not-cxr", "lateral")  # review reasons from the header, in this order

FOR_PROCESSING = (
    "DX For Processing (raw detector data, not for display): send the For Presentation image"
)


def header_text(ds: Dataset, keyword: str) -> str | None:
    """A header value as stripped text; None when absent or empty."""
    return str(ds.get(keyword, "") or "").strip() or None


def normalised(value: str | None) -> str | None:
    """Upper case, with underscores, hyphens and runs of spaces as one space; None stays."""
    if value is None:
        return None
    return " ".join(re.sub(r"[_\-]", " ", value).upper().split()) or None


def is_chest(body_part: str | None) -> bool:
    """BodyPartExamined names a chest (False when absent)."""
    text = normalised(body_part)
    return text is not None and not CHEST_WORDS.isdisjoint(text.split())


def is_frontal_chest(ds: Dataset) -> bool:
    """The header says a chest seen PA or AP."""
    view = normalised(header_text(ds, "ViewPosition"))
    return is_chest(header_text(ds, "BodyPartExamined")) and view in FRONTAL_VIEWS


def header_flags(body_part: str | None, view_position: str | None) -> tuple[str, ...]:
    """The review reasons a header raises (a subset of HEADER_REASONS, in its order)."""
    flags = []
    if body_part is not None and not is_chest(body_part):
        flags.append("not-cxr")
    if normalised(view_position) in LATERAL_VIEWS:
        flags.append("lateral")
    return tuple(flags)


def refusal(ds: Dataset) -> str | None:
    """Why the header rules the file out of scoring (one line), or None."""
    frontal_chest = is_frontal_chest(ds)
    if not frontal_chest and (why := _modality_refusal(ds)):
        return why
    # Not exempt for a frontal chest: raw detector values have no display chain a model was
    # trained on, so the picture itself would be wrong.
    if _for_processing(ds):
        return FOR_PROCESSING
    return None if frontal_chest else _sop_class_refusal(ds)


def check_header(ds: Dataset) -> None:
    """Raise DicomError with refusal's reason, when there is one."""
    if (why := refusal(ds)) is not None:
        raise DicomError(why)


def _modality_refusal(ds: Dataset) -> str | None:
    modality = normalised(header_text(ds, "Modality"))
    if modality is None or modality in RADIOGRAPH_MODALITIES:
        return None
    if modality in OTHER_XRAY:
        return f"not a chest radiograph: Modality {modality} ({OTHER_XRAY[modality]})"
    return f"not a radiograph: Modality {modality}"


def _for_processing(ds: Dataset) -> bool:
    intent = normalised(header_text(ds, "PresentationIntentType"))
    return header_text(ds, "SOPClassUID") == DX_PROCESSING or intent == "FOR PROCESSING"


def _sop_class_refusal(ds: Dataset) -> str | None:
    from pydicom.uid import UID

    uid = header_text(ds, "SOPClassUID")
    if uid is None or uid in RADIOGRAPH_SOP_CLASSES:
        return None
    name = UID(uid).name
    named = f"{name} ({uid})" if name != uid else uid  # an unknown class has no name
    return f"not a radiograph: SOP class {named}"
