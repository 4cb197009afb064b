"""Creating jobs: the one place a job row, its units of work and its first rows are written, and
the typed parameters a job keeps (its `params` JSON), read back with `from_job`.

    params = ScoreParams(folder="/data/xrays", chunk_size=256, explain="pneumonia")
    job = create_score_job(params, chunks, scorer="googlenet", unreadable=unreadable)
    job = create_train_job(TrainParams(config, data="/data/chest_xray", name="g1"))

The CLI, the tests and the benchmarks all create jobs here; running them is worker.dispatch's.
No torch is imported, so a job can be created where torch never loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from db.lookups import resolve_scorer
from db.schema import Ensemble, Job, Model
from db.scoring import ScorerRef, ensemble_ref, store_answers
from db.session import session_scope
from db.store import create_job
from db.work import create_units
from training.fitting.config import TrainConfig
from training.scoring.answers import FOLDER_UNREADABLE, failed_answers


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


def _described(scorer: Model | Ensemble, prevalence: float | None) -> str:
    if isinstance(scorer, Model):
        text = f"model {scorer.id} ({scorer.name}, {scorer.arch})"
    else:
        text = f"ensemble {scorer.id} ({scorer.name}, {scorer.method})"
    return text if prevalence is None else f"{text} at prevalence {prevalence:g}"


def _answering(scorer: Model | Ensemble) -> list[str]:
    """Who stores a row for each image: the model, or an ensemble's members and itself."""
    ref = ScorerRef([scorer.id]) if isinstance(scorer, Model) else ensemble_ref(scorer)
    return ref.all_keys


def create_score_job(
    params: ScoreParams,
    chunks: list[list[str]],
    scorer: str | None = None,
    unreadable: Sequence[tuple[str, str]] = (),
) -> NewJob:
    """A score job: its row, a unit per chunk of paths, and an error row per folder the scan
    could not read ((path, reason) pairs), in one transaction.

    scorer: a model id, name or arch, or an ensemble's name (or 'ensemble:NAME'); None: the
    model with the best validation F1. Raises NotFoundError when it names nothing, and
    PrevalenceForEnsemble when params has a prevalence and it is an ensemble.
    """
    n_images = sum(len(c) for c in chunks)
    with session_scope() as s:
        found = resolve_scorer(s, scorer)
        if isinstance(found, Ensemble):
            if params.prevalence is not None:
                raise PrevalenceForEnsemble("prevalence applies to single models, not ensembles")
            params = replace(params, ensemble_id=found.id)
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
        return NewJob(job.id, unit_ids, n_images, _described(found, params.prevalence))


def create_train_job(params: TrainParams) -> NewJob:
    """A training job: its row and its one unit of work."""
    with session_scope() as s:
        job = create_job(s, "train", params.to_json())
        return NewJob(job.id, create_units(s, job, [[]]))
