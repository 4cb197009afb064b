"""Models as bytes: safetensors weights plus a JSON header that can rebuild the model alone.

No pickle anywhere: loading a checkpoint from the database never executes code from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from training.data.preprocess import Normalizer
from training.models.registry import create_model
from training.review.stats import ReviewStats

_META_KEY = "cxrq"
_REVIEW_PREFIX = "review."  # tensors of the review statistics, beside the weights


@dataclass
class ModelBundle:
    """A ready-to-serve model with everything needed to preprocess its inputs."""

    model: nn.Module
    arch: str
    img_size: int
    normalizer: Normalizer
    threshold: float = 0.5
    config: dict[str, Any] = field(default_factory=dict)
    equalize: str = "none"  # contrast mapping at decode (training.data.equalize), part of the input
    crop: float = 1.0  # central fraction of each side kept at decode, part of the input
    train_prior: float | None = 0.5  # P(PNEUMONIA) the loss saw; None when unknown
    kind_head: str = "none"  # training.models.registry.KIND_HEADS: "none" answers no kind
    kind_threshold: float = 0.5  # VIRAL when P(VIRAL | PNEUMONIA) >= this
    review: ReviewStats | None = None  # when not to trust a call; None for older models

    @property
    def model_device(self) -> torch.device:
        """Where the model's weights are (the device it scores on)."""
        return next(self.model.parameters()).device

    def header(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "img_size": self.img_size,
            "mean": list(self.normalizer.mean),
            "std": list(self.normalizer.std),
            "threshold": self.threshold,
            "config": self.config,
            "equalize": self.equalize,
            "crop": self.crop,
            "train_prior": self.train_prior,
            "kind_head": self.kind_head,
            "kind_threshold": self.kind_threshold,
            "review": None if self.review is None else self.review.header(),
        }


def to_bytes(bundle: ModelBundle) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    if bundle.review is not None:
        state |= {_REVIEW_PREFIX + k: v.contiguous() for k, v in bundle.review.tensors().items()}
    return save_tensors(state, metadata={_META_KEY: json.dumps(bundle.header())})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors checkpoint, without loading any tensor."""
    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + size]).get("__metadata__", {})
    if _META_KEY not in meta:
        raise ValueError("not a cxrq checkpoint: header has no model description")
    return json.loads(meta[_META_KEY])


def from_bytes(data: bytes, device: str | torch.device = "cpu") -> ModelBundle:
    header = read_header(data)
    # Built on the meta device, the stored tensors then assigned: no time is spent drawing
    # initial weights that would be overwritten at once.
    with torch.device("meta"):
        model = create_model(
            header["arch"], img_size=header["img_size"], kind_head=header.get("kind_head", "none")
        )
    tensors = load_tensors(data)
    review = {
        k[len(_REVIEW_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_REVIEW_PREFIX)
    }
    weights = {k: v for k, v in tensors.items() if not k.startswith(_REVIEW_PREFIX)}
    model.load_state_dict(weights, strict=True, assign=True)
    model.to(device, memory_format=torch.channels_last).eval()  # NHWC: see inference.model_input
    return ModelBundle(
        model=model,
        arch=header["arch"],
        img_size=header["img_size"],
        normalizer=Normalizer(tuple(header["mean"]), tuple(header["std"])),
        threshold=float(header["threshold"]),
        config=header.get("config", {}),
        equalize=header.get("equalize", "none"),
        crop=float(header.get("crop", 1.0)),
        train_prior=header.get("train_prior", _older_train_prior(header.get("config", {}))),
        kind_head=header.get("kind_head", "none"),
        kind_threshold=float(header.get("kind_threshold", 0.5)),
        review=ReviewStats.from_parts(header["review"], review) if header.get("review") else None,
    )


def _older_train_prior(config: dict[str, Any]) -> float | None:
    """Checkpoints from before train_prior was stored: balanced presets saw 50/50."""
    return 0.5 if config.get("balance", "flip") in ("flip", "weight") else None
