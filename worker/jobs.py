"""Creating jobs: the one place a job row, its units of work, its first rows and its audit entry
are written. The typed parameters (worker.job_params) are re-exported here.

    params = ScoreParams(folder="/data/xrays", chunk_size=256, explain="pneumonia")
    job = create_score_job(params, chunks, scorer="googlenet", unreadable=unreadable)
    job = create_train_job(TrainParams(config, data="/data/chest_xray", name="g1"))

The CLI, the tests and the benchmarks all create jobs here; running them is worker.dispatch's.
No torch is imported, so a job can be created where torch never loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from db import audit
from db.aliases import check_not_alias
from db.schema import Ensemble, Job, Model, SiteProfile
from db.scoring import store_answers
from db.session import session_scope
from db.store import create_job
from db.work import create_units
from training.scoring.answers import FOLDER_UNREADABLE, failed_answers
from worker.job_params import ScoreParams, TrainParams
from worker.job_scorer import (
    ShadowError,
    answering,
    described,
    operating_point,
    scorer_of,
    with_shadow,
)

__all__ = ["NewJob", "PrevalenceForEnsemble", "ScoreParams", "ShadowError", "TrainParams"]


class PrevalenceForEnsemble(ValueError):
    """A prevalence was asked of an ensemble: P is restated for it only by single models."""


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
    chosen_by: str = ""
    shadow: str = ""  # "model 7 (googlenet, g2)" when a shadow model scores beside it


def create_score_job(
    params: ScoreParams,
    chunks: list[list[str]],
    scorer: str | None = None,
    unreadable: Sequence[tuple[str, str]] = (),
    record: Callable[[Session, int], None] | None = None,
    shadow: str | None = None,
) -> NewJob:
    """A score job: its row, a unit per chunk of paths, and an error row per folder the scan
    could not read ((path, reason) pairs), in one transaction.

    scorer: a model id, alias, name or arch, or an ensemble's name (or 'ensemble:NAME'); None:
    the `default` alias (db.lookups.resolve). Raises NotFoundError when it names nothing, and
    PrevalenceForEnsemble when params has a prevalence and it is an ensemble. `record` writes
    the caller's own rows for the new job id in the same transaction (the gateway's instances).
    `shadow` names a model that scores the same images beside it without deciding anything.
    The job and its audit entry commit together.
    """
    n_images = sum(len(c) for c in chunks)
    with session_scope() as s:
        chosen = scorer_of(s, params, scorer)
        found = chosen.scorer
        params = replace(params, chosen_by=chosen.how)
        if shadow is not None:
            params = with_shadow(s, params, found, shadow)
        if isinstance(found, Ensemble):
            if params.prevalence is not None:
                raise PrevalenceForEnsemble("prevalence applies to single models, not ensembles")
            params = replace(params, ensemble_id=found.id)
        params = operating_point(s, found, params)
        job = create_job(s, "score", params.to_json())
        # An unreadable folder is one row (and one unit of progress) standing for its images.
        job.model_id = found.id if isinstance(found, Model) else None
        job.progress_total = n_images + len(unreadable)
        unit_ids = create_units(s, job, chunks)
        keys = answering(found)
        answers = [
            answer
            for path, reason in unreadable
            for answer in failed_answers(keys, [path], [None], FOLDER_UNREADABLE + reason)
        ]
        store_answers(s, job.id, answers, overwrite=False)
        if record is not None:
            record(s, job.id)
        _audit_score(s, job, params, n_images)
        text = described(found, params)
        point = (params.threshold, params.threshold_source)
        shadow_text = ""
        if params.shadow_model_id is not None:
            shadow_text = described(s.get(Model, params.shadow_model_id))
        chosen = params.chosen_by or ""
        return NewJob(job.id, unit_ids, n_images, text, *point, chosen, shadow_text)


def _audit_score(s: Session, job: Job, params: ScoreParams, n_images: int) -> None:
    action = "calibrate" if params.calibrate else ("evaluate" if params.evaluate else "score")
    site = s.get(SiteProfile, params.site_profile_id) if params.site_profile_id else None
    detail = {"images": n_images, "folder": params.folder, "chosen_by": params.chosen_by}
    if params.shadow_model_id is not None:
        detail["shadow_model_id"] = params.shadow_model_id
    if params.dicom:
        detail["calling_ae"] = params.dicom.get("calling_ae")
    site_name = (params.calibrate or {}).get("site") or (site.site if site else None)
    audit.record(
        s,
        action,
        job_id=job.id,
        model_id=job.model_id,
        site=site_name,
        detail=detail | ({"ensemble_id": params.ensemble_id} if params.ensemble_id else {}),
    )


def create_train_job(params: TrainParams) -> NewJob:
    """A training job: its row and its one unit of work, with its audit entry. A model name
    may not be an alias's (a reference must never mean two things)."""
    with session_scope() as s:
        if params.name:
            check_not_alias(s, params.name)
        job = create_job(s, "train", params.to_json())
        config = params.config
        detail = {"arch": config.arch, "preset": config.preset, "data": params.data}
        audit.record(s, "train", job_id=job.id, detail=detail)
        return NewJob(job.id, create_units(s, job, [[]]))
