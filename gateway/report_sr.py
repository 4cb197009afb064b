"""The structured report of one scored X-ray: a TID 1500 measurement report, Enhanced SR.

    sr = build_sr(source, answer, instance_number=1)   # a pydicom Dataset, ready to send
    sr_facts(sr)               # {"label": "PNEUMONIA", "prob": 0.91, ...}: the SR, read back
    sr_mismatches(sr, answer)  # [] when the SR says what the prediction row says

The content tree (PS3.16 TID 1500, one TID 1501 measurement group about the source image):

    observer: the model as a device (TID 1004); procedure reported: plain chest X-ray
    group:    Finding = Pneumonia; Pneumonia = Present | Absent; kind; review requested
              Probability = P(pneumonia); probability of viral pneumonia; Threshold Value
              algorithm (TID 4019): model name, weights SHA-256 as version, model_id=, arch=
              text: review reasons, threshold source, site, site profile, "unverified" comment
              source of measurement: the source image

Enhanced SR is enough (no 3D coordinates, no by-reference relationships) and is the SR class
PACSs have stored longest. The document is UNVERIFIED and PRELIMINARY: a machine result that no
physician has signed. Concepts without a standard code use the private scheme 99CXRQ, declared
in the Coding Scheme Identification Sequence.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from highdicom import sr as hsr
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr.utils import find_content_items
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import EnhancedSRStorage

from gateway.result_uids import (
    device_uid,
    pin_times,
    result_times,
    result_uid,
    series_number,
    source_header,
)

if TYPE_CHECKING:
    from gateway.results import Answer

MANUFACTURER = "cxrq"
SCHEME = "99CXRQ"
CODING_SCHEME = dict(
    designator=SCHEME, name="cxrq result concepts", responsible_organization="cxrq"
)

PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
PLAIN_CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
KIND_CODES = {
    "BACTERIAL": Code("53084003", "SCT", "Bacterial pneumonia"),
    "VIRAL": Code("75570004", "SCT", "Viral pneumonia"),
}
PRESENT, ABSENT = codes.SCT.Present, codes.SCT.Absent  # 52101004, 272519000
YES, NO = codes.SCT.Yes, codes.SCT.No  # 373066001, 373067005
PROBABILITY = codes.DCM.Probability  # 122157
THRESHOLD = codes.DCM.ThresholdValue  # 122411
NO_UNITS = codes.UCUM.NoUnits  # "1"
KIND = Code("KIND", SCHEME, "Kind of pneumonia")
PROB_VIRAL = Code("PROB-VIRAL", SCHEME, "Probability of viral pneumonia")
REVIEW = Code("REVIEW", SCHEME, "Human review requested")
REVIEW_REASON = Code("REVIEW-REASON", SCHEME, "Review reason")
THRESHOLD_SOURCE = Code("THRESHOLD-SOURCE", SCHEME, "Threshold source")
SITE = Code("SITE", SCHEME, "Site")
SITE_PROFILE = Code("SITE-PROFILE", SCHEME, "Site profile")

LABELS = ("PNEUMONIA", "NORMAL")
_JOB = re.compile(r"^cxrq job (\d+)$")


def build_sr(source: Dataset, answer: Answer, instance_number: int) -> Dataset:
    """The Enhanced SR of `answer` about the `source` instance, in the source's study.

    Its SOP Instance UID is result_uid(source SOP UID, job, "sr") and its series the job's SR
    series of the study, so building it again gives the same object (byte for byte when
    `answer.scored_at` is set). Patient and study attributes are copied from `source`.

    An error row (no probability or no label) has nothing to report: ValueError. Callers send
    no SR for it; the error stays in the prediction row (`cxrq report predictions`)."""
    _check(answer)
    header = source_header(source)
    with warnings.catch_warnings():
        # A caret-less name (ANONYMOUS) is legal DICOM and is copied as the source spells it.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        sr = _enhanced_sr(header, answer, instance_number)
    pin_times(sr, answer.scored_at)
    return sr


def _enhanced_sr(header: Dataset, answer: Answer, instance_number: int) -> hsr.EnhancedSR:
    return hsr.EnhancedSR(
        evidence=[header],
        content=_report(header, answer),
        series_instance_uid=result_uid(header.StudyInstanceUID, answer.job_id, "sr-series"),
        series_number=series_number(answer.job_id, "sr-series"),
        sop_instance_uid=result_uid(header.SOPInstanceUID, answer.job_id, "sr"),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER,
        series_description="cxrq pneumonia result (unverified)",
        is_complete=True,
        is_final=False,
        is_verified=False,
        performed_procedure_codes=[PLAIN_CHEST_XRAY],
        coding_schemes=[CodingSchemeIdentificationItem(**CODING_SCHEME)],
        **result_times(answer.scored_at),
    )


def _check(answer: Answer) -> None:
    if answer.prob is None or answer.label is None:
        reason = answer.error or "no probability"
        raise ValueError(f"job {answer.job_id}: an error row gets no SR ({reason})")
    if answer.label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {answer.label!r}")
    if answer.kind is not None and answer.kind not in KIND_CODES:
        raise ValueError(f"kind must be one of {', '.join(KIND_CODES)}, got {answer.kind!r}")


def _report(header: Dataset, answer: Answer) -> hsr.MeasurementReport:
    device = hsr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(answer.model_id, answer.weights_sha256),
        name=answer.model_name,
        manufacturer_name=MANUFACTURER,
        model_name=answer.model_arch,
    )
    context = hsr.ObservationContext(
        observer_device_context=hsr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    return hsr.MeasurementReport(
        observation_context=context,
        procedure_reported=PLAIN_CHEST_XRAY,
        imaging_measurements=[_group(header, answer)],
    )


def _group(header: Dataset, answer: Answer) -> hsr.MeasurementsAndQualitativeEvaluations:
    algorithm = hsr.AlgorithmIdentification(
        name=answer.model_name,
        version=answer.weights_sha256,
        parameters=[f"model_id={answer.model_id}", f"arch={answer.model_arch}"],
        manufacturer=MANUFACTURER,
    )
    measurements = [_number(PROBABILITY, answer.prob)]
    if answer.prob_viral is not None:
        measurements.append(_number(PROB_VIRAL, answer.prob_viral))
    if answer.threshold is not None:
        measurements.append(_number(THRESHOLD, answer.threshold))
    present = PRESENT if answer.label == "PNEUMONIA" else ABSENT
    evaluations = [hsr.QualitativeEvaluation(PNEUMONIA, present)]
    if answer.kind is not None:
        evaluations.append(hsr.QualitativeEvaluation(KIND, KIND_CODES[answer.kind]))
    evaluations.append(hsr.QualitativeEvaluation(REVIEW, YES if answer.review_reasons else NO))
    group = hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(
            uid=result_uid(header.SOPInstanceUID, answer.job_id, "finding"),
            identifier=f"cxrq job {answer.job_id}",
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hsr.SourceImageForMeasurementGroup.from_source_image(header)],
    )
    # TID 1501 allows free-text qualitative evaluations; highdicom's constructor takes coded
    # ones only, so the text items are added to the group's content afterwards.
    for name, text in _texts(answer):
        group[0].ContentSequence.append(
            hsr.TextContentItem(name=name, value=text, relationship_type="CONTAINS")
        )
    return group


def _number(name: Code, value: float) -> hsr.Measurement:
    # A Python float, so highdicom also stores the exact FloatingPointValue beside the
    # 16-character decimal string. The group's algorithm identification covers every number.
    return hsr.Measurement(name=name, value=float(value), unit=NO_UNITS)


def _texts(answer: Answer) -> list[tuple[Code, str]]:
    texts = [(REVIEW_REASON, reason) for reason in answer.review_reasons]
    texts.append((THRESHOLD_SOURCE, answer.threshold_source))
    if answer.site is not None:
        texts.append((SITE, answer.site))
    if answer.site_profile_id is not None:
        texts.append((SITE_PROFILE, str(answer.site_profile_id)))
    texts.append(
        (
            codes.DCM.Comment,
            f"Unverified machine result: computed by the model {answer.model_name} "
            f"(cxrq model {answer.model_id}) and not reviewed by a physician. "
            "It is not a diagnosis.",
        )
    )
    return texts


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
