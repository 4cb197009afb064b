"""Where the model looks: a Grad-CAM heatmap per scored image.

    from training.explain.gradcam import explain_batch
    out, maps = explain_batch(bundle.model, bundle.arch, images_uint8, bundle.normalizer)
    blob = encode_grid(maps[0])  # training.explain.grid: float16 bytes for the database

`explain_batch` runs one forward pass per chunk and returns both the model's output (so a
scorer needs no second pass for P(PNEUMONIA)) and one small map per image: Grad-CAM
(Selvaraju et al. 2017) at the layer named in TARGET_LAYERS, or gradient x input for the MLP,
which has no spatial layer. Backward runs only from the pneumonia logit down to that layer: the
layers before it run without autograd and no weight gradient is ever computed, so a map costs
a fraction of a second pass (benchmarks/explain_faithfulness.py measures it).

Whether the maps are faithful to the model rather than pretty is measured in
training.explain.faithfulness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.data.preprocess import Normalizer
from training.models.registry import pneumonia_logit

# The MLP sees pixels, not a feature map: its map is gradient x input (abs, summed over the
# colour channels) averaged onto an INPUT_GRID x INPUT_GRID grid.
INPUT = "input"
INPUT_GRID = 16

# Grad-CAM layer per arch: the candidate that did best on the deletion check among those that
# keep a spatial grid at 64 px (GoogLeNet's, ResNet50's and EfficientNet-Lite0's last blocks are
# 2x2 there). Measured on all 188 test/PNEUMONIA images, 64 px, served folded, with models from
# fit(make_config(arch, epochs=8, max_images_per_class=1000)) (resnet50: 600 a class;
# efficientnet_lite0: 6 epochs, pretrained=True); hottest 10% of pixels deleted, 5 placements.
# Per candidate: mean drop of P with blur fill, hot/random (ratio) and the logit's win rate;
# then the same with mean-grey fill. Blur often *raises* P at random places (haze looks like
# opacity), hence the infinite ratios; the win rate and the mean-fill figures decide.
#   cnn      body.1  16x16 +.050/-.004 (inf) win .95 | +.327/+.114 (2.9) win .96
#            body.2   8x8  +.044/-.020 (inf) win .97 | +.459/+.076 (6.0) win 1.00  <- chosen
#            body.3   4x4  +.039/-.012 (inf) win .93 | +.381/+.095 (4.0) win .96
#   googlenet, that quick model (8 epochs, 1,000 a class, binary):
#            inception3b 8x8 -.008/+.005 (-1.8) win .31 | +.132/+.091 (1.4) win .70
#            inception4c  4x4 +.008/+.007 (1.2) win .39 | +.110/+.083 (1.3) win .73
#            inception4e  4x4 +.012/+.003 (3.5) win .44 | +.147/+.081 (1.8) win .86
#            inception5b  2x2 +.010/-.000 (inf) win .68 | +.038/+.078 (0.5) win .20
#   googlenet, the default model (`cxrq train --arch googlenet`, all data, kind head), which
#   decides: blur P drops hot/random, logit drops and win rate | mean-grey P and logit drops |
#   Spearman against random weights. Blur leaves P within 0.01 everywhere: the model's evidence
#   is low-frequency opacity, which a blurred copy keeps.
#            inception3b 8x8 -.001/-.001 logit +.24/-.05 win .69 | +.215/+.054 (4.0) logit
#                        +2.65/+0.70 | -0.11  <- chosen: as faithful, twice the resolution
#            inception4a 4x4 -.008/-.008 logit +.41/-.12 win .76 | +.172/+.042 (4.1) logit
#                        +2.66/+0.60 | -0.15
#            inception4c 4x4 -.008/-.006 logit +.30/-.12 win .74 | +.141/+.039 (3.6) | -0.25
#            inception4e 4x4 -.002/-.001 logit +.25/-.09 win .72 | +.142/+.041 (3.5) | -0.18
#            inception5a 2x2 +.003/+.000 logit +.09/-.09 win .63 | +.032/+.041 (0.8) | -0.53
#   resnet50 layer2   8x8  +.036/-.001 (inf) win .69 | +.255/+.041 (6.2) win .97  <- chosen
#            layer3   4x4  +.000/-.002 (inf) win .71 | +.087/+.032 (2.7) win .78
#            layer4   2x2  -.009/-.007 (nan) win .51 | -.009/+.026 (-0.4) win .31
#   efficientnet_lite0 (P saturated at ~0.99: P drops are noise, logit drops hot/random shown)
#            _blocks.4  8x8 logit -0.06/-0.61 win .60 | logit +1.14/+2.02 win .39
#            _blocks.7  4x4 logit +0.61/-0.22 win .67 | logit +3.80/+3.35 win .50
#            _blocks.10 4x4 logit +1.11/-0.18 win .73 | logit +3.79/+2.41 win .64  <- chosen
#            _blocks.15 2x2 logit +0.65/-0.21 win .62 | logit +0.96/+2.91 win .31
#   mlp      input 16x16 -.018/-.015 (nan) win .70 | +.053/+.005 (10.4) win .76
TARGET_LAYERS: dict[str, str] = {
    "cnn": "body.2",
    "googlenet": "body.inception3b",
    "resnet50": "body.layer2",
    "efficientnet_lite0": "body._blocks.10",
    "mlp": INPUT,
}

# Like training.scoring.inference.INFER_BATCH: small chunks keep activations in cache.
EXPLAIN_BATCH = 64


def target_layer(arch: str) -> str:
    """The module name whose Grad-CAM map `explain_batch` returns for arch (or INPUT)."""
    if arch not in TARGET_LAYERS:
        known = ", ".join(sorted(TARGET_LAYERS))
        raise KeyError(f"no heatmap layer for arch {arch!r}; known: {known}")
    return TARGET_LAYERS[arch]


def explain_batch(
    model: nn.Module,
    arch: str,
    images_uint8: torch.Tensor,
    normalizer: Normalizer,
    layer: str | None = None,
    batch_size: int = EXPLAIN_BATCH,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(model output, maps) for a uint8 (N, 3, S, S) batch, in one forward pass per chunk.

    The output is exactly what model(x) returns (detached, float, CPU): (N,) or (N, units).
    The maps are (N, h, w) float32 in [0, 1], each divided by its own maximum (an all-zero map
    stays zero). `layer` overrides TARGET_LAYERS[arch] (a module name, or INPUT)."""
    name = layer or target_layer(arch)
    was_training = model.training
    model.eval()
    outs, maps = [], []
    # inference_mode(False): a caller inside inference mode still gets autograd here.
    try:
        with torch.inference_mode(False):
            run, device = _runner(model), _device_of(model)
            for start in range(0, images_uint8.shape[0], batch_size):
                chunk = images_uint8[start : start + batch_size].to(device, non_blocking=True)
                x = normalizer(chunk).contiguous(memory_format=torch.channels_last)
                out, cam = _input_map(run, x) if name == INPUT else _gradcam(run, model, name, x)
                outs.append(out.detach().float().cpu())
                maps.append(_unit_max(cam).cpu())
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0), torch.empty(0, 0, 0)
    return torch.cat(outs), torch.cat(maps)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


Runner = Callable[[torch.Tensor], torch.Tensor]


def _runner(model: nn.Module) -> Runner:
    """The model as a callable. Weights loaded under torch.inference_mode() cannot take part
    in a graph, so such a model runs on plain copies of them (the model itself is unchanged)."""
    state = dict(model.named_parameters())
    state.update(model.named_buffers())
    if not any(t.is_inference() for t in state.values()):
        return model
    copies = {k: t.clone() if t.is_inference() else t for k, t in state.items()}
    return lambda x: torch.func.functional_call(model, copies, (x,))


def _gradcam(
    run: Runner, model: nn.Module, name: str, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM at module `name`: ReLU(sum_k alpha_k A_k), alpha_k the spatial mean of
    d logit / d A_k. The forward runs without autograd up to the module, whose output then
    becomes a leaf: the graph, and the backward, cover only the layers after it."""
    module = model.get_submodule(name)
    captured: list[torch.Tensor] = []
    # A served model is shared: the hook must leave forwards run by other threads alone.
    caller = threading.get_ident()

    def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != caller:
            return None
        leaf = out.detach().requires_grad_()
        captured.append(leaf)
        torch.set_grad_enabled(True)  # record from here to the logit
        return leaf

    handle = module.register_forward_hook(hook)
    grad_was = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(False)
        out = run(x)
    finally:
        handle.remove()
        torch.set_grad_enabled(grad_was)
    if len(captured) != 1:
        raise RuntimeError(f"layer {name!r} ran {len(captured)} times in one forward, not once")
    act = captured[0]
    (grad,) = torch.autograd.grad(pneumonia_logit(out).sum(), act)
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    return out, F.relu((alpha * act.detach()).sum(dim=1))


def _input_map(run: Runner, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient x input, abs, summed over channels, averaged onto an INPUT_GRID grid."""
    x = x.detach().requires_grad_()
    with torch.enable_grad():
        out = run(x)
    (grad,) = torch.autograd.grad(pneumonia_logit(out).sum(), x)
    saliency = (grad * x.detach()).abs().sum(dim=1, keepdim=True)
    grid = (min(INPUT_GRID, x.shape[2]), min(INPUT_GRID, x.shape[3]))
    return out, F.adaptive_avg_pool2d(saliency, grid)[:, 0]


def _unit_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its own maximum; all-zero (or non-finite) maps become zero."""
    maps = torch.nan_to_num(maps.detach().float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    top = maps.amax(dim=(1, 2), keepdim=True)
    return torch.where(top > 0, maps / top.clamp_min(torch.finfo(torch.float32).tiny), 0.0)


def combine_maps(maps: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """An ensemble's (N, H, W) map: each member's (N, h_i, w_i) map resized bilinearly to the
    largest member grid, averaged with the members' weights (negative ones count as 0; all
    zero -> a plain mean), and renormalised to a maximum of 1 per image."""
    if not maps or len(maps) != len(weights):
        raise ValueError(f"{len(maps)} maps and {len(weights)} weights: need one weight a map")
    height, width = max((m.shape[1:] for m in maps), key=lambda hw: hw[0] * hw[1])
    w = torch.tensor([max(float(v), 0.0) for v in weights], dtype=torch.float32)
    w = torch.ones_like(w) if w.sum() <= 0 else w
    total = torch.zeros(maps[0].shape[0], height, width)
    for member, weight in zip(maps, w, strict=True):
        total += weight * resize_maps(member, (height, width))
    return _unit_max(total / w.sum())


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) -> (N, *size), bilinear, align_corners=False."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps.float()
    resized = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return resized[:, 0]
