"""Model registry: `create_model(name)` builds any registered architecture from scratch.

Every model maps a normalised (N, 3, S, S) batch to (N,) logits of P(PNEUMONIA). Register a new
architecture with `@register_model("name")`; the tests are parametrized over `list_models()`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(KeyError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, img_size: int = 64, pretrained: bool = False) -> nn.Module:
    """Build a registered model; `pretrained` loads ImageNet weights where the arch has them."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown arch {name!r}; choose one of {', '.join(list_models())}")
    return _REGISTRY[name](img_size=img_size, pretrained=pretrained)


class _SqueezeLogit(nn.Module):
    """Wraps a backbone with one output unit so every model returns shape (N,)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten()


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights; train it from scratch")


@register_model("mlp")
def mlp(img_size: int = 64, pretrained: bool = False) -> nn.Module:
    _no_pretrained("mlp", pretrained)
    return _SqueezeLogit(
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(3 * img_size * img_size, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(512, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, 1),
        )
    )


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register_model("cnn")
def cnn(img_size: int = 64, pretrained: bool = False) -> nn.Module:
    _no_pretrained("cnn", pretrained)
    return _SqueezeLogit(
        nn.Sequential(
            _conv_block(3, 32),
            _conv_block(32, 64),
            _conv_block(64, 128),
            _conv_block(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(128, 1),
        )
    )


def _imagenet_head_swap(model: nn.Module, attr: str) -> nn.Module:
    head = getattr(model, attr)
    setattr(model, attr, nn.Linear(head.in_features, 1))
    return _SqueezeLogit(model)


@register_model("googlenet")
def googlenet(img_size: int = 64, pretrained: bool = False) -> nn.Module:
    from torchvision.models import GoogLeNet_Weights
    from torchvision.models import googlenet as tv_googlenet

    if pretrained:
        # Downloads once into the torch hub cache; offline machines must pre-seed that cache.
        model = tv_googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1)
        model.aux_logits, model.aux1, model.aux2 = False, None, None
        return _imagenet_head_swap(model, "fc")
    model = tv_googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=1)
    return _SqueezeLogit(model)


@register_model("resnet50")
def resnet50(img_size: int = 64, pretrained: bool = False) -> nn.Module:
    from torchvision.models import ResNet50_Weights
    from torchvision.models import resnet50 as tv_resnet50

    if pretrained:
        return _imagenet_head_swap(tv_resnet50(weights=ResNet50_Weights.IMAGENET1K_V2), "fc")
    return _SqueezeLogit(tv_resnet50(weights=None, num_classes=1))
