"""Train one model from a TrainConfig and a dataset folder; evaluate it on validation (and test).

from training.fitting.config import make_config
from training.fitting.train_loop import fit
result = fit(make_config("googlenet", epochs=3), "../shared/data/chest_xray")
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.data.augment import (
    apply_flips,
    balance_with_flips,
    balanced_sample,
    random_affine,
    random_jitter,
    random_photometric,
)
from training.data.data_files import LabeledImage, find_splits, fingerprint, kind_code
from training.data.preprocess import Normalizer, decode_many
from training.data.splits import patient_split
from training.evaluation.curves import roc_points
from training.evaluation.metrics import binary_scores, kind_scores, roc_auc
from training.fitting.config import TrainConfig
from training.models.checkpoint import ModelBundle
from training.models.registry import create_model, normalizer_for, split_logits
from training.review.features import feature_tap
from training.review.verdicts import Calibration, ReviewStats, fit_review
from training.scoring.ensemble import balanced_threshold, sensitivity_threshold
from training.scoring.inference import predict_outputs

# A val/ folder is used as given only when it can measure both classes; the official
# Kaggle val/ holds 16 images, too few, so a patient split of train/ is used instead.
MIN_VAL_PER_CLASS = 50

ProgressFn = Callable[[int, int, str], None]  # (done, total, message)
CancelFn = Callable[[], bool]


class TrainingCancelled(Exception):
    pass


class TrainingDataError(ValueError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback

    pass


class TrainingDiverged(RuntimeError):
    """The loss or the model's outputs stopped being numbers; nothing worth storing is left."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def _diverged(what: str, where: str, config: TrainConfig) -> TrainingDiverged:
    return TrainingDiverged(f"training diverged: {what} {where}; lower --lr (now {config.lr:g})")


@dataclass
class Tensors:
    """Decoded uint8 images, labels and pneumonia kinds of one split (undecodable files
    dropped). kinds: 0 bacterial, 1 viral, -1 NORMAL or a PNEUMONIA of unknown kind."""

    images: torch.Tensor
    labels: torch.Tensor
    dropped: list[str] = field(default_factory=list)
    kinds: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kinds is None:
            self.kinds = torch.full_like(self.labels, -1)

    @classmethod
    def decode(
        cls, items: list[LabeledImage], size: int, equalize: str = "none", crop: float = 1.0
    ) -> Tensors:
        decoded = decode_many([i.path for i in items], size, equalize_mode=equalize, crop=crop)
        kept = [items[i] for i in decoded.ok_index]
        labels = torch.tensor([i.label for i in kept], dtype=torch.long)
        kinds = torch.tensor([kind_code(i.path, i.label) for i in kept], dtype=torch.long)
        dropped = [f"{items[i].path}: {msg}" for i, msg in decoded.errors.items()]
        return cls(decoded.tensor, labels, dropped, kinds)


@dataclass
class TrainResult:
    bundle: ModelBundle
    val_scores: dict[str, Any]
    test_scores: dict[str, Any] | None
    history: list[dict[str, Any]]
    data: dict[str, Any]  # fingerprint, counts and how validation was chosen
    seconds: float


def _cap(items: list[LabeledImage], per_class: int, seed: int) -> list[LabeledImage]:
    if per_class <= 0:
        return items
    rng = random.Random(seed)
    kept: list[LabeledImage] = []
    for label in (0, 1):
        members = [i for i in items if i.label == label]
        kept += sorted(rng.sample(members, min(per_class, len(members))), key=lambda i: i.path)
    return kept


def choose_validation(
    splits: dict[str, list[LabeledImage]], config: TrainConfig
) -> tuple[list[LabeledImage], list[LabeledImage], str]:
    """(train, val, how) — the val/ folder when big enough, else a patient split of train."""
    train = _cap(splits["train"], config.max_images_per_class, config.seed)
    val = splits.get("val", [])
    if all(sum(i.label == c for i in val) >= MIN_VAL_PER_CLASS for c in (0, 1)):
        return train, val, "val folder"
    train, val = patient_split(train, config.val_fraction, config.seed)
    for name, part in (("training", train), ("validation", val)):
        if {i.label for i in part} != {0, 1}:
            raise TrainingDataError(
                f"the {name} part has only one class; add images of both classes"
            )
    how = f"patient split of train, fraction {config.val_fraction}, seed {config.seed}"
    return train, val, how


def three_way_split(
    splits: dict[str, list[LabeledImage]], config: TrainConfig
) -> tuple[list[LabeledImage], list[LabeledImage], list[LabeledImage], str]:
    """(train, tune, val, how): validation first, then a tuning split out of train, by patient."""
    train, val, how = choose_validation(splits, config)
    tune: list[LabeledImage] = []
    if config.tune_fraction > 0:
        train, tune = patient_split(train, config.tune_fraction, config.seed + 1)
    return train, tune, val, how


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def augment(images: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """uint8 batch -> augmented, normalised float batch, as the config asks."""
    x = images.float().div_(255.0)
    x = random_affine(x, config.rotation_degrees, config.zoom, config.shift, gen)
    x = random_jitter(x, config.jitter, config.jitter, gen)
    x = random_photometric(x, config.photometric, gen)
    return normalizer_for(config.arch).from_unit(x)


def loss_function(config: TrainConfig, labels: torch.Tensor) -> nn.Module:
    """BCE; with balance="weight" positives are down-weighted so both classes weigh the same."""
    if config.balance != "weight":
        return nn.BCEWithLogitsLoss()
    n_pos = labels.sum().clamp(min=1)
    return nn.BCEWithLogitsLoss(pos_weight=(labels.numel() - n_pos) / n_pos)


def kind_loss_function(config: TrainConfig, kinds: torch.Tensor) -> nn.Module:
    """BCE of P(VIRAL | PNEUMONIA), summed: `train_one_epoch` divides by the whole batch, so a
    pneumonia of known kind weighs what its binary term does (with the 3-way head, the two
    terms add up to its cross-entropy). balance="weight" weighs viral and bacterial alike."""
    if config.balance != "weight":
        return nn.BCEWithLogitsLoss(reduction="sum")
    n_viral = (kinds == 1).sum().clamp(min=1)
    return nn.BCEWithLogitsLoss(reduction="sum", pos_weight=(kinds == 0).sum() / n_viral)


def _loss(
    out: torch.Tensor,
    target: torch.Tensor,
    kinds: torch.Tensor,
    loss_fn: nn.Module,
    kind_loss_fn: nn.Module,
) -> torch.Tensor:
    """The binary loss, plus the kind's over the batch's pneumonias of known kind."""
    logit, viral_logit = split_logits(out.float())
    loss = loss_fn(logit, target)
    if viral_logit is not None:
        known = kinds >= 0
        loss = loss + kind_loss_fn(viral_logit[known], kinds[known].float()) / kinds.numel()
    return loss


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast where the hardware runs it natively (AVX512-BF16/AMX CPUs, recent
    GPUs), else None: emulated bf16 would be slower than float32."""
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def train_one_epoch(
    model: nn.Module,
    data: Tensors,
    plan: tuple[torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    gen: torch.Generator,
    on_batch: Callable[[int, int, float], None],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int = 1,
) -> float:
    """One pass over the (balanced) plan in a seeded order; returns the mean loss.

    Raises TrainingDiverged at the first loss that is not a finite number (`epoch` names it)."""
    model.train()
    device = next(model.parameters()).device
    loss_fn = loss_function(config, data.labels).to(device)
    kind_loss_fn = kind_loss_function(config, data.kinds).to(device)
    dtype = amp_dtype(config, device)
    index, flip = plan
    order = torch.randperm(index.numel(), generator=gen)
    n_batches = (order.numel() + config.batch_size - 1) // config.batch_size
    total = 0.0
    for b in range(n_batches):
        pick = order[b * config.batch_size : (b + 1) * config.batch_size]
        images = augment(apply_flips(data.images[index[pick]], flip[pick]), config, gen)
        target = data.labels[index[pick]].float().to(device)
        if config.label_smoothing > 0:
            target = target * (1 - config.label_smoothing) + 0.5 * config.label_smoothing
        # NHWC: oneDNN trains GoogLeNet@64 ~1.3x faster on a CPU than NCHW (measured).
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(images)
        loss = _loss(out, target, data.kinds[index[pick]].to(device), loss_fn, kind_loss_fn)
        if not torch.isfinite(loss):
            # One NaN step turns every weight into NaN: stop now, not after the last epoch.
            raise _diverged(f"loss is {loss.item()}", f"at epoch {epoch}, batch {b + 1}", config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
        on_batch(b + 1, n_batches, loss.item())
    return total / max(n_batches, 1)


def _finite_outputs(
    model: nn.Module, data: Tensors, normalizer: Normalizer, config: TrainConfig, where: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(P(PNEUMONIA), P(VIRAL | PNEUMONIA) or None) on a split, or TrainingDiverged: a step can
    blow the weights up (NaN or infinite outputs) while the loss it was taken from was finite."""
    prob, viral = predict_outputs(model, data.images, normalizer)
    for p in (prob, viral) if viral is not None else (prob,):
        bad = int((~torch.isfinite(p)).sum())
        if bad:
            what = f"the model's output is not a number for {bad} of {p.numel()} images"
            raise _diverged(what, where, config)
    return prob, viral


def _finite_proba(
    model: nn.Module, data: Tensors, normalizer: Normalizer, config: TrainConfig, where: str
) -> torch.Tensor:
    return _finite_outputs(model, data, normalizer, config, where)[0]


def _evaluate(model: nn.Module, data: Tensors, bundle: ModelBundle, config: TrainConfig) -> dict:
    """Binary scores at the bundle's threshold, and the kind's at its kind threshold; "roc"
    holds the ROC curve's points (the reports draw it)."""
    prob, viral = _finite_outputs(model, data, bundle.normalizer, config, "on evaluation")
    scores = binary_scores(data.labels, prob, bundle.threshold)
    if viral is not None:
        scores.update(kind_scores(data.kinds, viral, bundle.kind_threshold))
    points = roc_points(data.labels.tolist(), prob.tolist())
    scores["roc"] = [[round(x, 4), round(y, 4)] for x, y in points]
    return scores


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int):  # noqa: ANN202
    if config.schedule != "cosine":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))


@dataclass
class Data:
    train: Tensors
    val: Tensors
    tune: Tensors | None
    info: dict[str, Any]
    test_items: list[LabeledImage]


def _decode(items: list[LabeledImage], config: TrainConfig) -> Tensors:
    """Decode at the config's size, contrast mapping and crop: what the bundle serves with."""
    return Tensors.decode(items, config.img_size, config.equalize, config.crop)


def load_data(config: TrainConfig, data_root: str | Path) -> Data:
    """Decode train / tune / validation once; the tuning split comes out of train, by patient."""
    splits = find_splits(data_root)
    train_items, tune_items, val_items, how = three_way_split(splits, config)
    train, val = (_decode(x, config) for x in (train_items, val_items))
    tune = _decode(tune_items, config) if tune_items else None
    info = {
        "root": str(Path(data_root).resolve()),
        "fingerprint": fingerprint(train_items + tune_items + val_items),
        "validation": how,
        "n_train": int(train.labels.numel()),
        "n_tune": len(tune_items),
        "n_val": int(val.labels.numel()),
        "dropped": train.dropped + val.dropped + (tune.dropped if tune else []),
    }
    return Data(train, val, tune, info, splits.get("test", []))


def _plan(config: TrainConfig, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if config.balance == "flip":
        return balance_with_flips(labels, config.run_seed)
    return torch.arange(labels.numel()), torch.zeros_like(labels)


def train_prior(config: TrainConfig, labels: torch.Tensor) -> float:
    """The PNEUMONIA share the loss saw: 0.5 when the classes were balanced (copies, weights or
    sampling), else the training split's own share. Prevalence correction starts from it."""
    if config.balance in ("flip", "weight", "sample"):
        return 0.5
    return float(labels.float().mean())


def _choose_thresholds(
    config: TrainConfig, model: nn.Module, tune: Tensors | None, normalizer: Normalizer
) -> tuple[float, float]:
    """(the decision threshold, the kind threshold), from one pass over the tuning split.

    The kind threshold balances viral and bacterial recall on the tuning split's pneumonias of
    known kind; 0.5 without a tuning split or without a kind head."""
    by_rule = config.threshold in ("balanced", "sensitivity")
    if by_rule and tune is None:
        raise TrainingDataError(
            f'threshold "{config.threshold}" needs a tuning split (tune_fraction > 0)'
        )
    known = tune.kinds >= 0 if tune is not None else None
    by_kind = config.kind_head != "none" and known is not None and bool(known.any())
    if not (by_rule or by_kind):
        return float(config.threshold), 0.5
    prob, viral = _finite_outputs(model, tune, normalizer, config, "on the tuning split")
    kind_cut = balanced_threshold(tune.kinds[known], viral[known]) if by_kind else 0.5
    if not by_rule:
        return float(config.threshold), kind_cut
    if config.threshold == "sensitivity":
        return sensitivity_threshold(tune.labels, prob, config.target_sensitivity), kind_cut
    return balanced_threshold(tune.labels, prob), kind_cut


def _fit_review(
    model: nn.Module, data: Data, normalizer: Normalizer, config: TrainConfig, threshold: float
) -> ReviewStats:
    """The statistics that tell when not to trust a call (training.review), from the trained
    model's penultimate features on the training part and the tuning split."""

    def calibration(split: Tensors, where: str) -> Calibration:
        with feature_tap(model) as caught:
            prob = _finite_proba(model, split, normalizer, config, where)
        return Calibration(torch.cat(caught), split.images, prob, split.labels)

    tune = None if data.tune is None else calibration(data.tune, "on the tuning split")
    return fit_review(calibration(data.train, "on the training split"), tune, threshold)


def fit(
    config: TrainConfig,
    data_root: str | Path,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> TrainResult:
    """Train `config.arch` on data_root's train split; score validation (and test/ if present)."""
    started = time.perf_counter()
    gen = seed_everything(config.run_seed)
    data = load_data(config, data_root)
    plan = _plan(config, data.train.labels)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(config.arch, config.img_size, config.pretrained, config.kind_head)
    norm = normalizer_for(config.arch)
    model = model.to(device, memory_format=torch.channels_last)
    batches = (plan[0].numel() + config.batch_size - 1) // config.batch_size
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, batches * config.epochs)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    report = progress or (lambda done, total, msg: None)
    for epoch in range(config.epochs):
        if should_cancel and should_cancel():
            raise TrainingCancelled(f"cancelled before epoch {epoch + 1}")

        def on_batch(b: int, n: int, loss: float, epoch: int = epoch) -> None:
            label = f"epoch {epoch + 1}/{config.epochs} loss {loss:.3f}"
            report(epoch * batches + b, config.epochs * batches, label)

        if config.balance == "sample":
            plan = (balanced_sample(data.train.labels, gen), plan[1])
        loss = train_one_epoch(
            model, data.train, plan, optimizer, config, gen, on_batch, scheduler, epoch + 1
        )
        after = f"after epoch {epoch + 1}"
        val_auc = _auc(model, data.val, norm, config, f"on validation {after}")
        record = {"epoch": epoch + 1, "loss": loss, "val_auc": val_auc}
        if data.tune is not None:
            record["tune_auc"] = _auc(
                model, data.tune, norm, config, f"on the tuning split {after}"
            )
            if config.early_stopping and (best is None or record["tune_auc"] > best[0]):
                best = (record["tune_auc"], epoch + 1, copy.deepcopy(model.state_dict()))
        history.append(record)
        label = f"epoch {epoch + 1}/{config.epochs} loss {loss:.3f} val AUC {record['val_auc']:.4f}"
        report((epoch + 1) * batches, config.epochs * batches, label)
    if best is not None:
        model.load_state_dict(best[2])
    model = model.cpu().eval()
    threshold, kind_threshold = _choose_thresholds(config, model, data.tune, norm)
    bundle = ModelBundle(
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
        review=_fit_review(model, data, norm, config, threshold),
    )
    val_scores = _evaluate(model, data.val, bundle, config)
    test_scores = None
    if data.test_items:
        test_scores = _evaluate(model, _decode(data.test_items, config), bundle, config)
    info = {
        **data.info,
        "n_train_balanced": int(plan[0].numel()),
        "best_epoch": best[1] if best else config.epochs,
        "kind_threshold": bundle.kind_threshold,  # also in the weights' header
        "review": bundle.review.header(),  # its flag lines; the Gaussians are in the weights
        "roc": {"validation": val_scores.pop("roc")},
    }
    if test_scores is not None:
        info["roc"]["test"] = test_scores.pop("roc")
    return TrainResult(
        bundle, val_scores, test_scores, history, info, time.perf_counter() - started
    )


def _auc(
    model: nn.Module, data: Tensors, normalizer: Normalizer, config: TrainConfig, where: str
) -> float:
    return roc_auc(data.labels, _finite_proba(model, data, normalizer, config, where))
