"""The structured report of one scored X-ray: a TID 1500 measurement report, Enhanced SR.

    sr = build_sr(source, answer, instance_number=1)   # a pydicom Dataset, ready to send

gateway.sr_facts reads one back.

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
from typing import TYPE_CHECKING

from highdicom import sr as hsr
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

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
