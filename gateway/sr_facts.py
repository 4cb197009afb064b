"""Reading back an SR that gateway.report_sr built: what it says, as plain values, and where
it differs from the prediction row it was built from.

    sr_facts(sr)               # {"label": "PNEUMONIA", "prob": 0.91, ...}
    sr_mismatches(sr, answer)  # [] when the SR says what the prediction row says
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from highdicom import sr as hsr
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import EnhancedSRStorage

from gateway.report_sr import (
    _JOB,
    KIND,
    KIND_CODES,
    PNEUMONIA,
    PRESENT,
    PROB_VIRAL,
    PROBABILITY,
    REVIEW,
    REVIEW_REASON,
    SITE,
    SITE_PROFILE,
    THRESHOLD,
    THRESHOLD_SOURCE,
    YES,
)

if TYPE_CHECKING:
    from gateway.results import Answer


def sr_facts(ds: Dataset) -> dict[str, Any]:
    """What an SR built by build_sr says, as plain values: the Answer's fields it carries
    (label, prob, threshold, threshold_source, kind, prob_viral, review_reasons, model_id,
    model_name, model_arch, weights_sha256, site, site_profile_id, job_id) plus
    `source_sop_instance_uid`, `review` (a human review was requested) and `verified`.

    ValueError when `ds` is not such an SR."""
    if ds.get("SOPClassUID") != EnhancedSRStorage:
        raise ValueError(f"not an Enhanced SR: SOP class {ds.get('SOPClassUID')}")
    report = hsr.EnhancedSR.from_dataset(ds).content
    groups = report.get_image_measurement_groups(finding_type=PNEUMONIA)
    if len(groups) != 1:
        raise ValueError(f"expected one pneumonia measurement group, found {len(groups)}")
    group = groups[0]
    root = group[0]
    job = _JOB.match(group.tracking_identifier or "")
    params = dict(p.split("=", 1) for p in _texts_named(root, codes.DCM.AlgorithmParameters))
    profile = _one_text(root, SITE_PROFILE)
    return {
        "job_id": int(job.group(1)) if job else None,
        "source_sop_instance_uid": str(group.source_images[0].referenced_sop_instance_uid),
        "label": "PNEUMONIA" if _coded(group, PNEUMONIA) == PRESENT else "NORMAL",
        "prob": _measured(group, PROBABILITY),
        "threshold": _measured(group, THRESHOLD),
        "threshold_source": _one_text(root, THRESHOLD_SOURCE),
        "kind": _kind_name(_coded(group, KIND)),
        "prob_viral": _measured(group, PROB_VIRAL),
        "review": _coded(group, REVIEW) == YES,
        "review_reasons": tuple(_texts_named(root, REVIEW_REASON)),
        "model_id": int(params["model_id"]) if "model_id" in params else None,
        "model_name": _one_text(root, codes.DCM.AlgorithmName),
        "model_arch": params.get("arch"),
        "weights_sha256": _one_text(root, codes.DCM.AlgorithmVersion),
        "site": _one_text(root, SITE),
        "site_profile_id": int(profile) if profile is not None else None,
        "verified": ds.get("VerificationFlag") == "VERIFIED",
    }


# The Answer fields an SR carries, compared as sr_mismatches does.
ANSWER_FACTS = (
    "job_id",
    "label",
    "prob",
    "threshold",
    "threshold_source",
    "kind",
    "prob_viral",
    "review_reasons",
    "model_id",
    "model_name",
    "model_arch",
    "weights_sha256",
    "site",
    "site_profile_id",
)


def sr_mismatches(ds: Dataset, answer: Answer) -> list[str]:
    """The Answer fields the SR states differently (empty: the SR says what the row says).
    Numbers are compared exactly: the SR keeps each as a 64-bit float."""
    facts = sr_facts(ds)
    wrong = [name for name in ANSWER_FACTS if facts[name] != _expected(answer, name)]
    if facts["verified"]:
        wrong.append("verified")
    return wrong


def _expected(answer: Answer, name: str) -> Any:
    value = getattr(answer, name)
    if name in ("prob", "threshold", "prob_viral") and value is not None:
        return float(value)
    return tuple(value) if name == "review_reasons" else value


def _kind_name(code: Any) -> str | None:
    if code is None:
        return None
    return next((kind for kind, known in KIND_CODES.items() if code == known), None)


def _measured(group: hsr.MeasurementsAndQualitativeEvaluations, name: Code) -> float | None:
    found = group.get_measurements(name=name)
    return float(found[0].value) if found else None


def _coded(group: hsr.MeasurementsAndQualitativeEvaluations, name: Code) -> Any:
    found = group.get_qualitative_evaluations(name=name)
    return found[0].value if found else None


def _texts_named(root: Dataset, name: Code) -> list[str]:
    return [item.TextValue for item in find_content_items(root, name=name)]


def _one_text(root: Dataset, name: Code) -> str | None:
    found = _texts_named(root, name)
    return found[0] if found else None
