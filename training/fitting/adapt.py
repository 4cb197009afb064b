"""Adapting a model to one site (`cxrq calibrate --adapt`): fine-tune it on the site's labelled
images, with the epoch count and the operating point chosen on patients it did not see.

from training.fitting.adapt import adapt_to_site
result = adapt_to_site(bundle, items, trainable="all")  # the site's LabeledImages
result.bundle      # fine-tuned on every site image for result.epochs epochs
result.oof_prob    # each image's P from the fold model that never saw its patient

Two folds by patient: each fold's model is tuned on the other fold and scores its own after
every epoch; the epoch count is the one whose pooled out-of-fold AUC is best (0: tuning does
not help, the parent is kept), and the site profile's threshold and calibration are fitted on
those out-of-fold scores, never on scores of images a model was tuned on.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from training.data.data_files import LabeledImage, kind_code
from training.data.splits import patient_split
from training.evaluation.metrics import roc_auc
from training.fitting.config import TrainConfig
from training.fitting.loop import balance_plan, make_optimizer, seed_everything, train_one_epoch
from training.fitting.site_images import SiteImages
from training.fitting.site_threshold import patient_weights
from training.fitting.training_data import DecodedSplit
from training.models.checkpoint import ModelBundle
from training.scoring.inference import predict_outputs

MAX_EPOCHS = 6
ADAPT_LR = 2e-4  # a tenth of the default preset's: the site refines, it does not retrain
TRAINABLE = ("all", "head")
GAIN_QUANTILE = 0.05  # tuning is kept only if its AUC gain holds at this bootstrap quantile
GAIN_RESAMPLES = 1000


@dataclass
class AdaptResult:
    bundle: ModelBundle
    items: list[LabeledImage]  # the site images that decoded, in the order of oof_prob
    oof_prob: torch.Tensor  # (N,) out-of-fold P at the chosen epoch count
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: pooled OOF AUC
    seconds: float = 0.0

    def site_images(self) -> SiteImages:
        """The out-of-fold scores as the site images a profile is fitted on."""
        index = position_of_patient(self.items)
        patients = [index[i.patient] for i in self.items]
        labels = torch.tensor([i.label for i in self.items], dtype=torch.long)
        return SiteImages(
            prob=self.oof_prob.double(),
            labels=labels,
            patients=torch.tensor(patients, dtype=torch.long),
            viral=torch.full((labels.numel(),), float("nan"), dtype=torch.float64),
            kinds=torch.tensor([kind_code(i.path, i.label) for i in self.items]).long(),
        )


def _config(bundle: ModelBundle, seed: int) -> TrainConfig:
    config = TrainConfig.from_dict(bundle.config)
    return replace(config, lr=ADAPT_LR, schedule="none", balance="weight", init_seed=seed)


def _trainable(model: torch.nn.Module, which: str) -> None:
    """Freeze all but what is tuned: every weight, or only the last linear layer."""
    if which == "all":
        return
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in last.parameters():
        p.requires_grad_(True)


def _tune(
    bundle: ModelBundle,
    split: DecodedSplit,
    epochs: int,
    trainable: str,
    seed: int,
    after_epoch: Callable[[torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    model = copy.deepcopy(bundle.model)
    config = _config(bundle, seed)
    _trainable(model, trainable)
    gen = seed_everything(seed)
    optimizer = make_optimizer(model, config)
    plan = balance_plan(config, split.labels)
    for epoch in range(1, epochs + 1):
        train_one_epoch(model, split, plan, optimizer, config, gen, lambda *_: None, epoch=epoch)
        if after_epoch is not None:
            after_epoch(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _subset(split: DecodedSplit, index: torch.Tensor) -> DecodedSplit:
    return DecodedSplit(split.images[index], split.labels[index], kinds=split.kinds[index])


def position_of_patient(items: list[LabeledImage]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i in items:
        index.setdefault(i.patient, len(index))
    return index


def choose_epochs(
    history: list[dict[str, float]],
    labels: torch.Tensor,
    oof: torch.Tensor,
    patients: torch.Tensor,
    seed: int = 0,
) -> int:
    """The epoch count with the best pooled out-of-fold AUC, or 0 (keep the parent) when its
    gain over the parent does not hold over the patient bootstrap."""
    best = max(history, key=lambda h: (h["oof_auc"], -h["epoch"]))["epoch"]
    if best and not gain_holds(labels, oof[0], oof[best], patients, seed):
        return 0
    return best


def gain_holds(
    labels: torch.Tensor,
    before: torch.Tensor,
    after: torch.Tensor,
    patients: torch.Tensor,
    seed: int = 0,
) -> bool:
    """Whether `after` ranks better than `before` at the GAIN_QUANTILE of a patient bootstrap
    of the AUC difference: a fold's best epoch is picked on the same scores, so a small gain
    there is mostly luck (measured on test/ halves: gains of 0.002-0.006 out of fold came
    with losses of 0.005-0.015 on the other half)."""
    y = labels.bool()
    weights = patient_weights(patients, GAIN_RESAMPLES, seed)
    w_pos, w_neg = weights[:, y], weights[:, ~y]
    norm = w_pos.sum(1) * w_neg.sum(1)

    def auc(p: torch.Tensor) -> torch.Tensor:
        p = p.double()
        wins = (p[y].view(-1, 1) > p[~y].view(1, -1)).double()
        wins += 0.5 * (p[y].view(-1, 1) == p[~y].view(1, -1)).double()
        return ((w_pos @ wins) * w_neg).sum(1) / norm

    gain = auc(after) - auc(before)
    return bool(torch.nanquantile(gain, GAIN_QUANTILE) > 0)


def _fold_probs(
    bundle: ModelBundle,
    split: DecodedSplit,
    tuned_on: torch.Tensor,
    held: torch.Tensor,
    trainable: str,
    max_epochs: int,
    seed: int,
) -> torch.Tensor:
    """(max_epochs + 1, len(held)): the held images' P before tuning and after each epoch of
    tuning on the other fold."""
    held_images = split.images[held]
    probs = [predict_outputs(bundle.model, held_images, bundle.normalizer)[0]]

    def score(model: torch.nn.Module) -> None:
        probs.append(predict_outputs(model, held_images, bundle.normalizer)[0])

    _tune(bundle, _subset(split, tuned_on), max_epochs, trainable, seed, score)
    return torch.stack(probs)


def adapt_to_site(
    bundle: ModelBundle,
    items: list[LabeledImage],
    trainable: str = "all",
    max_epochs: int = MAX_EPOCHS,
    seed: int = 0,
) -> AdaptResult:
    """Fine-tune `bundle` on the site's images (see the module docstring)."""
    start = time.perf_counter()
    split = DecodedSplit.decode(items, bundle.img_size, bundle.equalize, bundle.crop)
    bad = {d.rsplit(": ", 1)[0] for d in split.dropped}
    items = [i for i in items if i.path not in bad]
    position = {i.path: n for n, i in enumerate(items)}
    fold_a, fold_b = patient_split(items, val_fraction=0.5, seed=seed)
    folds = [torch.tensor([position[i.path] for i in f]) for f in (fold_a, fold_b)]
    # oof[e][i]: image i's P from the model tuned e epochs on the fold without it.
    oof = torch.full((max_epochs + 1, split.labels.numel()), float("nan"))
    for k, held in enumerate(folds):
        oof[:, held] = _fold_probs(
            bundle, split, folds[1 - k], held, trainable, max_epochs, seed + k
        )
    history = [{"epoch": e, "oof_auc": roc_auc(split.labels, oof[e])} for e in range(len(oof))]
    index = position_of_patient(items)
    patients = torch.tensor([index[i.patient] for i in items])
    best = choose_epochs(history, split.labels, oof, patients, seed)
    model = _tune(bundle, split, best, trainable, seed) if best else copy.deepcopy(bundle.model)
    adapted = replace(bundle, model=model, config=bundle.config | {"adapted": trainable})
    return AdaptResult(adapted, items, oof[best], best, history, time.perf_counter() - start)
