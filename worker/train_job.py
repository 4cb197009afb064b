"""The training job: TrainConfig from the job row -> trained model, weights and scores in the DB."""

from __future__ import annotations

import traceback

from db.schema import Job
from db.session import session_scope
from db.store import finish_job, get_job, mark_running, save_evaluation, save_model
from training.checkpoint import sha256, to_bytes
from training.config import TrainConfig, make_config
from training.data_files import find_splits
from training.models import UnknownModelError, list_models
from training.train_loop import TrainingCancelled, TrainResult, fit
from worker.progress import JobProgress, ProgressFn


def build_config(arch: str, preset: str | None, data_dir: str, **overrides: object) -> TrainConfig:
    """Validate what a user asked for before any job row exists; errors are one line."""
    if arch not in list_models():
        raise UnknownModelError(f"unknown arch {arch!r}; choose one of {', '.join(list_models())}")
    find_splits(data_dir)  # raises DataLayoutError with a fix-it message
    return make_config(arch, preset, **overrides)


def _cancel_requested(job_id: int) -> bool:
    with session_scope() as s:
        return bool(s.get(Job, job_id).cancel_requested)


def _store(job_id: int, name: str, config: TrainConfig, result: TrainResult) -> int:
    weights = to_bytes(result.bundle)
    with session_scope() as s:
        model = save_model(
            s,
            name=name,
            arch=config.arch,
            preset=config.preset,
            img_size=config.img_size,
            threshold=result.bundle.threshold,
            config=config.to_dict(),
            data={**result.data, "history": result.history},
            weights=weights,
            weights_sha256=sha256(weights),
            n_params=sum(p.numel() for p in result.bundle.model.parameters()),
            train_seconds=result.seconds,
            job_id=job_id,
        )
        root, how = result.data["root"], result.data["validation"]
        save_evaluation(s, "validation", f"{root} ({how})", result.val_scores, job_id, model.id)
        if result.test_scores:
            save_evaluation(s, "test", f"{root}/test", result.test_scores, job_id, model.id)
        return model.id


def run_training_job(job_id: int, echo: ProgressFn | None = None) -> int | None:
    """Train the model a job row describes; returns the new model id (None if not succeeded)."""
    with session_scope() as s:
        job = get_job(s, job_id)
        params, ended = job.params, job.state not in ("pending", "running")
    if ended or _cancel_requested(job_id):
        if not ended:
            finish_job(job_id, "cancelled", "cancelled before it started")
        return None
    config = TrainConfig.from_dict(params["config"])
    mark_running(job_id, message=f"training {config.arch}")
    try:
        result = fit(
            config, params["data"], JobProgress(job_id, echo), lambda: _cancel_requested(job_id)
        )
        model_id = _store(job_id, params.get("name") or config.arch, config, result)
    except TrainingCancelled as exc:
        finish_job(job_id, "cancelled", str(exc))
        return None
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
    f1 = result.val_scores["f1"]
    finish_job(job_id, "succeeded", f"model {model_id}, validation F1 {f1:.3f}", model_id=model_id)
    return model_id
