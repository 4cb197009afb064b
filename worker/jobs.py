"""Creating jobs: the one place a job row, its units of work and its first rows are written, and
the typed parameters a job keeps (its `params` JSON), read back with `from_job`.

    params = ScoreParams(folder="/data/xrays", chunk_size=256, explain="pneumonia")
    job = create_score_job(params, chunks, scorer="googlenet", unreadable=unreadable)
    job = create_train_job(TrainParams(config, data="/data/chest_xray", name="g1"))

The CLI, the tests and the benchmarks all create jobs here; running them is worker.dispatch's.
No torch is imported, so a job can be created where torch never loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from db.lookups import resolve_scorer
from db.schema import Ensemble, Job, Model, SiteProfile
from db.scoring import ScorerRef, ensemble_ref, store_answers
from db.session import session_scope
from db.sites import SiteError, scoring_model_id
from db.store import create_job
from db.work import create_units
from training.fitting.config import TrainConfig
from training.scoring.answers import FOLDER_UNREADABLE, PREVALENCE_THRESHOLD, failed_answers


class PrevalenceForEnsemble(ValueError):
    """A prevalence was asked of an ensemble: P is restated for it only by single models."""


@dataclass(frozen=True)
class ScoreParams:
    """What a score job is asked to do, as its `params` JSON keeps it."""

    folder: str  # absolute; images' true labels come from folders below it
    chunk_size: int | None = None  # images per unit of work (None: not recorded)
    evaluate: bool = False  # store the scores as an evaluation of the scorer, not as "scored"
    explain: str = "none"  # heatmaps of: none, pneumonia (the PNEUMONIA calls) or all
    prevalence: float | None = None  # single models: restate P for it and decide at 0.5
    ensemble_id: int | None = None  # None: the job's model_id scores it
    site_profile_id: int | None = None  # single models: decide with this site's profile
    # What decides the calls: the threshold on the stored P, and where it comes from.
    threshold: float | None = None
    threshold_source: str | None = None
    calibrate: dict[str, Any] | None = None  # a calibration job: the profile to fit (settle)
    # Received over DICOM (gateway): the study, series and instance UIDs it came from, the
    # calling AE title and where its results go.
    dicom: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form: optional keys appear only when set, in the order rows have them."""
        params: dict[str, Any] = {
            "folder": self.folder,
            "chunk_size": self.chunk_size,
            "evaluate": self.evaluate,
        }
        if self.explain != "none":
            params["explain"] = self.explain
        if self.ensemble_id is not None:
            params["ensemble_id"] = self.ensemble_id
        if self.prevalence is not None:
            params["prevalence"] = self.prevalence
        optional = ("site_profile_id", "threshold", "threshold_source", "calibrate", "dicom")
        params |= {k: getattr(self, k) for k in optional if getattr(self, k) is not None}
        return params

    @classmethod
    def from_job(cls, job: Job) -> ScoreParams:
        p = job.params
        return cls(
            folder=p["folder"],
            chunk_size=p.get("chunk_size"),
            evaluate=bool(p.get("evaluate")),
            explain=p.get("explain", "none"),
            prevalence=p.get("prevalence"),
            ensemble_id=p.get("ensemble_id"),
            site_profile_id=p.get("site_profile_id"),
            threshold=p.get("threshold"),
            threshold_source=p.get("threshold_source"),
            calibrate=p.get("calibrate"),
            dicom=p.get("dicom"),
        )


@dataclass(frozen=True)
class TrainParams:
    """What a training job is asked to do, as its `params` JSON keeps it."""

    config: TrainConfig
    data: str  # the dataset folder, absolute
    name: str | None = None  # the model's name; None: its arch

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "data": self.data, "name": self.name}

    @classmethod
    def from_job(cls, job: Job) -> TrainParams:
        p = job.params
        return cls(TrainConfig.from_dict(p["config"]), p["data"], p.get("name"))


@dataclass(frozen=True)
class NewJob:
    """A job just created: its id and units, and for a score job what it will score, with whom
    (e.g. "model 3 (googlenet, googlenet)", "ensemble 1 (seed, vote)")."""

    id: int
    unit_ids: list[int]
    n_images: int = 0
    scorer: str = ""
    threshold: float = 0.5
    threshold_source: str = ""


def _described(scorer: Model | Ensemble, params: ScoreParams) -> str:
    if isinstance(scorer, Model):
        text = f"model {scorer.id} ({scorer.name}, {scorer.arch})"
    else:
        text = f"ensemble {scorer.id} ({scorer.name}, {scorer.method})"
    if params.prevalence is not None:
        return f"{text} at prevalence {params.prevalence:g}"
    if params.site_profile_id is not None:
        return f"{text} under site profile {params.site_profile_id}"
    return text


def _operating_point(s: Session, found: Model | Ensemble, params: ScoreParams) -> ScoreParams:
    """The threshold that will decide, and where it comes from, kept on the job."""
    if isinstance(found, Ensemble):
        return replace(params, threshold=found.threshold, threshold_source="ensemble")
    if params.prevalence is not None:
        source = f"prevalence {params.prevalence:g}"
        return replace(params, threshold=PREVALENCE_THRESHOLD, threshold_source=source)
    if params.site_profile_id is not None:
        profile = s.get(SiteProfile, params.site_profile_id)
        source = f"site {profile.site} (profile {profile.id})"
        return replace(params, threshold=profile.threshold, threshold_source=source)
    return replace(params, threshold=found.threshold, threshold_source=_model_source(found))


def _model_source(model: Model) -> str:
    """Where a model's own threshold comes from, and how many images it rests on."""
    rule, n_tune = model.config.get("threshold"), model.data.get("n_tune")
    if isinstance(rule, str) and n_tune:
        return f"training split ({rule} rule on {n_tune} tuning images)"
    if isinstance(rule, (int, float)):
        return f"training config (fixed at {rule:g}, preset {model.preset})"
    return "model's stored threshold"


def _scorer_of(s: Session, params: ScoreParams, scorer: str | None) -> Model | Ensemble:
    """Who scores: the site profile's model (its adapted model when it names one), else the
    reference resolved; an adapted model only ever through its site."""
    if params.site_profile_id is not None:
        return s.get(Model, scoring_model_id(s.get(SiteProfile, params.site_profile_id)))
    found = resolve_scorer(s, scorer)
    if isinstance(found, Model) and found.site is not None:
        raise SiteError(
            f"model {found.id} is adapted to site {found.site}; score with --site {found.site}"
        )
    return found


def _answering(scorer: Model | Ensemble) -> list[str]:
    """Who stores a row for each image: the model, or an ensemble's members and itself."""
    ref = ScorerRef([scorer.id]) if isinstance(scorer, Model) else ensemble_ref(scorer)
    return ref.all_keys


def create_score_job(
    params: ScoreParams,
    chunks: list[list[str]],
    scorer: str | None = None,
    unreadable: Sequence[tuple[str, str]] = (),
    record: Callable[[Session, int], None] | None = None,
) -> NewJob:
    """A score job: its row, a unit per chunk of paths, and an error row per folder the scan
    could not read ((path, reason) pairs), in one transaction.

    scorer: a model id, name or arch, or an ensemble's name (or 'ensemble:NAME'); None: the
    model with the best validation F1. Raises NotFoundError when it names nothing, and
    PrevalenceForEnsemble when params has a prevalence and it is an ensemble. `record` writes
    the caller's own rows for the new job id in the same transaction (the gateway's instances).
    """
    n_images = sum(len(c) for c in chunks)
    with session_scope() as s:
        found = _scorer_of(s, params, scorer)
        if isinstance(found, Ensemble):
            if params.prevalence is not None:
                raise PrevalenceForEnsemble("prevalence applies to single models, not ensembles")
            params = replace(params, ensemble_id=found.id)
        params = _operating_point(s, found, params)
        job = create_job(s, "score", params.to_json())
        # An unreadable folder is one row (and one unit of progress) standing for its images.
        job.model_id = found.id if isinstance(found, Model) else None
        job.progress_total = n_images + len(unreadable)
        unit_ids = create_units(s, job, chunks)
        keys = _answering(found)
        answers = [
            answer
            for path, reason in unreadable
            for answer in failed_answers(keys, [path], [None], FOLDER_UNREADABLE + reason)
        ]
        store_answers(s, job.id, answers, overwrite=False)
        if record is not None:
            record(s, job.id)
        described = _described(found, params)
        point = (params.threshold, params.threshold_source)
        return NewJob(job.id, unit_ids, n_images, described, *point)


def create_train_job(params: TrainParams) -> NewJob:
    """A training job: its row and its one unit of work."""
    with session_scope() as s:
        job = create_job(s, "train", params.to_json())
        return NewJob(job.id, create_units(s, job, [[]]))
