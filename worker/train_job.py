"""The training job: TrainConfig from the job row -> trained model, weights and scores in the DB.

The job has one work unit; the worker trains only while it holds the unit's lease, so a
redelivered or re-sent message never starts a second copy of a live training, and a training
whose lease was given away (its worker looked dead) stops instead of storing a second model.
"""

from __future__ import annotations

import logging
import traceback

from db import audit, work
from db.schema import Job, utcnow
from db.session import DatabaseError, session_scope
from db.store import finish_job, get_job, mark_running, save_evaluation, save_model
from training.data.data_files import find_splits
from training.devices import describe, device_name
from training.fitting.config import TrainConfig, make_config
from training.fitting.errors import TrainingCancelled
from training.fitting.fit import TrainResult, fit
from training.models.checkpoint import sha256, to_bytes
from training.models.registry import UnknownModelError, list_models
from worker.device import process_device, process_device_name
from worker.jobs import TrainParams
from worker.lease import Lease, hold
from worker.progress import JobProgress, ProgressFn
from worker.retry import with_db_retry

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another worker was given this training (ours looked dead); it, not we, stores a model."""


def build_config(arch: str, preset: str | None, data_dir: str, **overrides: object) -> TrainConfig:
    """Validate what a user asked for before any job row exists; errors are one line."""
    if arch not in list_models():
        raise UnknownModelError(f"unknown arch {arch!r}; choose one of {', '.join(list_models())}")
    find_splits(data_dir)  # raises DataLayoutError with a fix-it message
    return make_config(arch, preset, **overrides)


def _should_stop(job_id: int, lease: Lease) -> bool:
    if lease.lost.is_set():
        return True
    try:
        with session_scope() as s:
            return bool(s.get(Job, job_id).cancel_requested)
    except DatabaseError:
        return False  # a database blip is no reason to throw away an epoch


def _store(job_id: int, name: str, config: TrainConfig, result: TrainResult, lease: Lease) -> int:
    """Model, scores, the unit's done mark and the job's success: one transaction, ours only."""
    weights = to_bytes(result.bundle)
    with session_scope() as s:
        if not work.renew(s, lease.unit_id, lease.token, lease.seconds):
            raise LeaseLost(f"job {job_id}: another worker took this training over")
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
        work.finish_unit(s, lease.unit_id)
        job = get_job(s, job_id)
        f1 = result.val_scores["f1"]
        job.state, job.finished_at, job.model_id = "succeeded", utcnow(), model.id
        job.message = f"model {model.id}, validation F1 {f1:.3f}"
        # Stored, never promoted: only `cxrq model promote` changes what scores.
        audit.record(
            s,
            "model-stored",
            job_id=job_id,
            model_id=model.id,
            actor=job.actor,
            detail={"arch": config.arch, "sha256": model.weights_sha256},
        )
        return model.id


def ensure_unit(job_id: int) -> int:
    """The training's work unit, made on first use (jobs created before units existed)."""
    with session_scope() as s:
        ids = work.unit_ids(s, job_id, ("queued", "running", "done"))
        return ids[0] if ids else work.create_units(s, get_job(s, job_id), [[]])[0]


def run_training_job(
    job_id: int, echo: ProgressFn | None = None, unit_id: int | None = None
) -> int | None:
    """Train the model a job row describes; returns the new model id (None if not succeeded)."""
    with hold(unit_id or ensure_unit(job_id), process_device_name()) as lease:
        if lease is None:  # trained already, or a live worker is training it now
            return None
        return _train(job_id, lease, echo)


def _train(job_id: int, lease: Lease, echo: ProgressFn | None) -> int | None:
    with session_scope() as s:
        job = get_job(s, job_id)
        params, ended = TrainParams.from_job(job), job.state not in ("pending", "running")
        cancelled = job.cancel_requested
    if ended or cancelled:
        if not ended:
            finish_job(job_id, "cancelled", "cancelled before it started")
        return None
    config = params.config
    device = process_device()
    mark_running(job_id, message=f"training {config.arch} on {device_name(device)}")
    log.info("job %d: training %s on %s", job_id, config.arch, describe(device))
    try:

        def stop() -> bool:
            return _should_stop(job_id, lease)

        result = fit(config, params.data, JobProgress(job_id, echo), stop, device)
        name = params.name or config.arch
        return with_db_retry(lambda: _store(job_id, name, config, result, lease))
    except (TrainingCancelled, LeaseLost) as exc:
        if lease.lost.is_set() or isinstance(exc, LeaseLost):
            return None  # the worker that holds it now finishes the job
        finish_job(job_id, "cancelled", str(exc))
        return None
    except KeyboardInterrupt:
        finish_job(job_id, "cancelled", "interrupted (Ctrl-C) during training")
        raise
    except Exception as exc:
        finish_job(job_id, "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
