"""The typed parameters a job keeps (its `params` JSON), read back with `from_job`.

params = ScoreParams(folder="/data/xrays", chunk_size=256, explain="pneumonia")
ScoreParams.from_job(job).site_profile_id
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from db.schema import Job
from training.fitting.config import TrainConfig


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
    # A second model scoring the same images whose rows never decide (`cxrq score --shadow`),
    # and the site profile it decides its own rows with (its own threshold when None).
    shadow_model_id: int | None = None
    shadow_site_profile_id: int | None = None
    # How the scorer was chosen when no id or name was given: "alias default (model 5)", ...
    chosen_by: str | None = None

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
        params |= {k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None}
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
            **{k: p.get(k) for k in _OPTIONAL},
        )


_OPTIONAL = (
    "site_profile_id",
    "threshold",
    "threshold_source",
    "calibrate",
    "dicom",
    "shadow_model_id",
    "shadow_site_profile_id",
    "chosen_by",
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
