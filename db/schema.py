"""SQLAlchemy 2.0 tables: jobs, models (with their weights), evaluations, predictions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


CLASSES_BY_INDEX = ("NORMAL", "PNEUMONIA")  # label 1 is the positive class
JOB_STATES = ("pending", "running", "succeeded", "partial", "failed", "cancelled")
FINAL_STATES = ("succeeded", "partial", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # train | score
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # train: the model it produced; score: the model it used. No FK: models point back at jobs.
    model_id: Mapped[int | None] = mapped_column(Integer)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who asked for it: CXRQ_ACTOR, else the OS user of the command that made the row.
    actor: Mapped[str | None] = mapped_column(String(64))
    # A score job's batch against its reference (training.evaluation.drift): statistics, Holm
    # p-values and the verdict; None for other jobs and jobs scored before monitoring.
    drift: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    arch: Mapped[str] = mapped_column(String(32))
    preset: Mapped[str] = mapped_column(String(32))
    img_size: Mapped[int]
    threshold: Mapped[float] = mapped_column(Float)
    config: Mapped[dict[str, Any]]  # the full TrainConfig
    data: Mapped[dict[str, Any]]  # dataset fingerprint, counts, how validation was chosen
    weights: Mapped[bytes] = mapped_column(LargeBinary)  # safetensors, never pickle
    weights_sha256: Mapped[str] = mapped_column(String(64))
    n_params: Mapped[int]
    train_seconds: Mapped[float] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A model fine-tuned on one site's images (`cxrq calibrate --adapt`): its parent and the site.
    # It is served only through that site's profile, never by arch, name or as a default.
    # No FK (like Job.model_id): adding one would make SQLite rebuild the table, and dropping
    # the old one cascades into every prediction.
    parent_id: Mapped[int | None] = mapped_column(Integer)
    site: Mapped[str | None] = mapped_column(String(128))


class Ensemble(Base):
    """Several models combined: the seed's weighted vote, or a fitted soft vote (stacking)."""

    __tablename__ = "ensembles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    method: Mapped[str] = mapped_column(String(16))  # vote | stacking
    # [{"model_id": 3, "weight": 0.5}, ...]; stacking adds "bias" in `params`
    members: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    threshold: Mapped[float] = mapped_column(Float, default=0.5)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    fitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Evaluation(Base):
    """Scores of a model or ensemble on one labelled set: validation, test/, a scored job."""

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    ensemble_id: Mapped[int | None] = mapped_column(
        ForeignKey("ensembles.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    split: Mapped[str] = mapped_column(String(16))  # validation | test | scored
    dataset: Mapped[str] = mapped_column(Text)
    f1: Mapped[float] = mapped_column(Float)
    precision: Mapped[float] = mapped_column(Float)
    sensitivity: Mapped[float] = mapped_column(Float)
    specificity: Mapped[float] = mapped_column(Float)
    accuracy: Mapped[float] = mapped_column(Float)
    roc_auc: Mapped[float | None] = mapped_column(Float)  # None when one class is missing
    tp: Mapped[int]
    fp: Mapped[int]
    tn: Mapped[int]
    fn: Mapped[int]
    threshold: Mapped[float] = mapped_column(Float)
    n: Mapped[int]
    # Bacterial vs viral over the PNEUMONIA images of known kind, VIRAL positive; None when the
    # scorer has no kind head or the set has no image of known kind.
    kind_accuracy: Mapped[float | None] = mapped_column(Float)
    kind_sensitivity: Mapped[float | None] = mapped_column(Float)
    kind_specificity: Mapped[float | None] = mapped_column(Float)
    kind_roc_auc: Mapped[float | None] = mapped_column(Float)
    kind_threshold: Mapped[float | None] = mapped_column(Float)
    kind_n: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def scorer_key(model_id: int | None = None, ensemble_id: int | None = None) -> str:
    """The one non-null key naming who produced a prediction: 'model:3' or 'ensemble:1'."""
    return f"ensemble:{ensemble_id}" if ensemble_id is not None else f"model:{model_id}"


class Prediction(Base):
    __tablename__ = "predictions"
    # Redelivered or retried work upserts on this key instead of adding a second row.
    __table_args__ = (UniqueConstraint("job_id", "scorer", "path", name="uq_prediction"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    scorer: Mapped[str] = mapped_column(String(32))  # scorer_key(model_id, ensemble_id)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    ensemble_id: Mapped[int | None] = mapped_column(ForeignKey("ensembles.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    prob: Mapped[float | None] = mapped_column(Float)  # P(PNEUMONIA); None on error
    label: Mapped[str | None] = mapped_column(String(16))
    true_label: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    prob_viral: Mapped[float | None] = mapped_column(Float)  # P(VIRAL | PNEUMONIA)
    kind: Mapped[str | None] = mapped_column(String(16))  # BACTERIAL | VIRAL when PNEUMONIA
    # When not to trust the call (training.review); None for models fitted before it.
    ood_score: Mapped[float | None] = mapped_column(Float)  # not-cxr at >= 1
    anomaly_score: Mapped[float | None] = mapped_column(Float)  # far from NORMAL at >= 1
    confidence: Mapped[float | None] = mapped_column(Float)  # calibrated P(the call is right)
    disagreement: Mapped[float | None] = mapped_column(Float)  # ensembles: weight voting against
    review_score: Mapped[float | None] = mapped_column(Float)  # largest ratio to a flag line
    review: Mapped[bool | None] = mapped_column(Boolean)  # a person should look
    review_reasons: Mapped[str | None] = mapped_column(String(64))  # e.g. "not-cxr,anomaly"
    # DICOM inputs only (training.data.dicom_identity): never a patient's ID, name or birth date.
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    patient_hash: Mapped[str | None] = mapped_column(String(32))  # keyed by CXRQ_PATIENT_SALT
    # The operating point that decided `label`: the threshold on `prob`, and the site profile
    # whose threshold and calibration it was (None: the model's own, from its training split).
    threshold: Mapped[float | None] = mapped_column(Float)
    site_profile_id: Mapped[int | None] = mapped_column(Integer)  # no FK: see Model.parent_id
    # A shadow scorer's row (`cxrq score --shadow`): stored and compared, never deciding, never
    # in a job's scores, its drift or its DICOM results.
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The mean grey level (0-1) of the model's input: drift monitoring's view of the pixels.
    brightness: Mapped[float | None] = mapped_column(Float)


class SiteProfile(Base):
    """A model's operating point at one site, fitted on that site's labelled images
    (`cxrq calibrate`): the threshold, the recalibration of P, the review lines, the prevalence,
    the kind threshold and the reference monitoring compares against (all in `profile`)."""

    __tablename__ = "site_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(128), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    # The profile holds only for these weights: scoring with another model is refused.
    weights_sha256: Mapped[str] = mapped_column(String(64))
    # --adapt: the model fine-tuned on the site's images that scores under this profile.
    adapted_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL")
    )
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | replaced
    rule: Mapped[str] = mapped_column(String(16))  # sensitivity | balanced
    target_sensitivity: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)  # on the site-calibrated P
    profile: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    replaced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Heatmap(Base):
    """Where a scorer saw pneumonia in one image: a small grid over the model's input (the
    image's central `crop` fraction of each side, squashed square), float16 row-major."""

    __tablename__ = "heatmaps"
    __table_args__ = (UniqueConstraint("job_id", "scorer", "path", name="uq_heatmap"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    scorer: Mapped[str] = mapped_column(String(32))  # scorer_key(model_id, ensemble_id)
    path: Mapped[str] = mapped_column(Text)
    height: Mapped[int]
    width: Mapped[int]
    grid: Mapped[bytes] = mapped_column(LargeBinary)
    crop: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(32))  # e.g. grad-cam body.inception4e


class WorkUnit(Base):
    """One piece of a job that a worker leases: a chunk of images to score, or a training.

    The database, not the broker, is the record of what a job still needs: a worker holds a
    unit by renewing `lease_until`; a unit whose lease ran out (its worker died) or whose message
    the broker lost is sent again by the reaper. Claims are conditional updates, so however
    many copies of a message arrive, one worker at a time runs a unit.
    """

    __tablename__ = "work_units"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_work_unit"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int]
    paths: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty for a training
    state: Mapped[str] = mapped_column(
        String(16), default="queued", index=True
    )  # queued|running|done
    owner: Mapped[str | None] = mapped_column(String(128))  # the current claim's token
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sends: Mapped[int] = mapped_column(default=0)  # messages sent for it (1 unless re-sent)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where the last claim ran it ("cpu", "cuda:0"): a job's chunks run on several workers.
    device: Mapped[str | None] = mapped_column(String(16))


class DicomInstance(Base):
    """One instance received over DICOM (gateway): where it is spooled and which score job took
    it. UIDs only: the spooled file holds the patient, the database never does."""

    __tablename__ = "dicom_instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)  # the spooled file, as the job's unit names it
    size_bytes: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)  # no FK: jobs may be purged
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # spool retention


class OutboxItem(Base):
    """One result object (an SR or a secondary capture) owed to one destination: state only. The
    object is built from the spooled source at send time, so no pixel or patient data is here."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("result_uid", "destination", name="uq_outbox_result"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    source_sop_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    what: Mapped[str] = mapped_column(String(8))  # sr | sc
    result_uid: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(255))  # AE@host:port or a STOW-RS URL
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
