"""Train one model from a TrainConfig and a dataset folder; evaluate it on validation (and test).

from training.fitting.config import make_config
from training.fitting.fit import fit
result = fit(make_config("googlenet", epochs=3), "../shared/data/chest_xray")
result.bundle  # the ModelBundle to store; result.val_scores, result.history, result.data
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.data.augment import balanced_sample
from training.data.preprocess import Normalizer
from training.devices import prepare, resolve_device
from training.fitting.config import TrainConfig
from training.fitting.errors import TrainingCancelled
from training.fitting.loop import (
    balance_plan,
    make_optimizer,
    make_scheduler,
    seed_everything,
    train_one_epoch,
    train_prior,
)
from training.fitting.outputs import auc, evaluate
from training.fitting.precision import precision_used
from training.fitting.review_fit import fit_model_review, validation_reference
from training.fitting.thresholds import choose_thresholds
from training.fitting.training_data import TrainingData, decode_split, load_data
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model, normalizer_for

ProgressFn = Callable[[int, int, str], None]  # (done, total, message)
CancelFn = Callable[[], bool]
Plan = tuple[torch.Tensor, torch.Tensor]  # (image index, flip) of each training example


@dataclass
class TrainResult:
    bundle: ModelBundle
    val_scores: dict[str, Any]
    test_scores: dict[str, Any] | None
    history: list[dict[str, Any]]
    data: dict[str, Any]  # fingerprint, counts and how validation was chosen
    seconds: float


@dataclass
class _Epochs:
    """What the epochs leave behind: one record each, the epoch kept, the last plan."""

    history: list[dict[str, Any]]
    best_epoch: int
    plan: Plan


def fit(
    config: TrainConfig,
    data_root: str | Path,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    device: torch.device | None = None,
) -> TrainResult:
    """Train `config.arch` on data_root's train split; score validation (and test/ if present).

    `device` defaults to the first GPU, else the CPU. The split, the batch order and the
    checkpoint are the same on every device: only the arithmetic differs."""
    started = time.perf_counter()
    device = device or resolve_device("auto")
    prepare(device)
    gen = seed_everything(config.run_seed)
    data = load_data(config, data_root)
    plan = balance_plan(config, data.train.labels)
    model = create_model(config.arch, config.img_size, config.pretrained, config.kind_head)
    norm = normalizer_for(config.arch)
    model = model.to(device, memory_format=torch.channels_last)
    report = progress or (lambda done, total, msg: None)
    # The decoded uint8 cache goes to the device once: batches and augmentation stay there.
    on_device = replace(data, train=data.train.to(device))
    epochs = _train_epochs(model, on_device, plan, norm, config, gen, report, should_cancel)
    model = model.cpu().eval()
    bundle = _bundle(model, data, norm, config)
    val_scores, test_scores, info = _score(model, data, bundle, config, epochs)
    seconds = time.perf_counter() - started
    return TrainResult(bundle, val_scores, test_scores, epochs.history, info, seconds)


def _train_epochs(
    model: nn.Module,
    data: TrainingData,
    plan: Plan,
    norm: Normalizer,
    config: TrainConfig,
    gen: torch.Generator,
    report: ProgressFn,
    should_cancel: CancelFn | None,
) -> _Epochs:
    """Every epoch, reported batch by batch; with early stopping the model ends holding the
    weights of the epoch with the best tuning-split AUC."""
    batches = (plan[0].numel() + config.batch_size - 1) // config.batch_size
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, batches * config.epochs)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(config.epochs):
        if should_cancel and should_cancel():
            raise TrainingCancelled(f"cancelled before epoch {epoch + 1}")

        def on_batch(b: int, n: int, loss: float | None, epoch: int = epoch) -> None:
            label = f"epoch {epoch + 1}/{config.epochs}"
            label += "" if loss is None else f" loss {loss:.3f}"
            report(epoch * batches + b, config.epochs * batches, label)

        if config.balance == "sample":
            plan = (balanced_sample(data.train.labels, gen), plan[1])
        loss = train_one_epoch(
            model, data.train, plan, optimizer, config, gen, on_batch, scheduler, epoch + 1
        )
        record = _epoch_record(model, data, norm, config, epoch + 1, loss)
        tuned = data.tune is not None and config.early_stopping
        if tuned and (best is None or record["tune_auc"] > best[0]):
            best = (record["tune_auc"], epoch + 1, copy.deepcopy(model.state_dict()))
        history.append(record)
        label = f"epoch {epoch + 1}/{config.epochs} loss {loss:.3f} val AUC {record['val_auc']:.4f}"
        report((epoch + 1) * batches, config.epochs * batches, label)
    if best is not None:
        model.load_state_dict(best[2])
    return _Epochs(history, best[1] if best else config.epochs, plan)


def _epoch_record(
    model: nn.Module,
    data: TrainingData,
    norm: Normalizer,
    config: TrainConfig,
    epoch: int,
    loss: float,
) -> dict[str, Any]:
    """The epoch's mean loss and its validation (and tuning-split) AUC."""
    after = f"after epoch {epoch}"
    val_auc = auc(model, data.val, norm, config, f"on validation {after}")
    record = {"epoch": epoch, "loss": loss, "val_auc": val_auc}
    if data.tune is not None:
        record["tune_auc"] = auc(model, data.tune, norm, config, f"on the tuning split {after}")
    return record


def _bundle(
    model: nn.Module, data: TrainingData, norm: Normalizer, config: TrainConfig
) -> ModelBundle:
    """The trained model with everything it is served with: thresholds, decode, review."""
    threshold, kind_threshold = choose_thresholds(config, model, data.tune, norm)
    return ModelBundle(
        model,
        config.arch,
        config.img_size,
        norm,
        threshold,
        config.to_dict(),
        equalize=config.equalize,
        crop=config.crop,
        train_prior=train_prior(config, data.train.labels),
        kind_head=config.kind_head,
        kind_threshold=kind_threshold,
        review=fit_model_review(model, data, norm, config, threshold),
    )


def _score(
    model: nn.Module, data: TrainingData, bundle: ModelBundle, config: TrainConfig, run: _Epochs
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    """(validation scores, test/ scores or None, what the run records about its data)."""
    val_scores = evaluate(model, data.val, bundle, config)
    test_scores = None
    if data.test_items:
        test_scores = evaluate(model, decode_split(data.test_items, config), bundle, config)
    info = {
        **data.info,
        "n_train_balanced": int(run.plan[0].numel()),
        "best_epoch": run.best_epoch,
        # What `auto` became on this machine: bf16 and fp32 runs of one recipe differ.
        "precision_used": precision_used(config, next(model.parameters()).device),
        "kind_threshold": bundle.kind_threshold,  # also in the weights' header
        "review": bundle.review.header(),  # its flag lines; the Gaussians are in the weights
        "monitoring": {"sample": validation_reference(model, data.val, bundle, config)},
        "roc": {"validation": val_scores.pop("roc")},
    }
    if test_scores is not None:
        info["roc"]["test"] = test_scores.pop("roc")
    return val_scores, test_scores, info
