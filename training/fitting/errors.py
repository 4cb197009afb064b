"""What stops a training run, each a one-line message for the CLI (`user_error`).

from training.fitting.errors import TrainingDataError, diverged
raise TrainingDataError("the training part has only one class; ...")
raise diverged("loss is nan", "at epoch 3, batch 1", config)  # names the lr to lower
"""

from __future__ import annotations

from training.fitting.config import TrainConfig


class TrainingCancelled(Exception):
    pass


class TrainingDataError(ValueError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback

    pass


class TrainingDiverged(RuntimeError):
    """The loss or the model's outputs stopped being numbers; nothing worth storing is left."""

    user_error = True  # the CLI prints str(exc) as one line, no traceback


def diverged(what: str, where: str, config: TrainConfig) -> TrainingDiverged:
    """The error for a run that diverged: what went wrong, where, and the lr to lower."""
    return TrainingDiverged(f"training diverged: {what} {where}; lower --lr (now {config.lr:g})")
