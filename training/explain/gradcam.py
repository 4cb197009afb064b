"""Where the model looks: a Grad-CAM heatmap per scored image, and checks that the maps are
faithful to the model rather than pretty.

    from training.explain.gradcam import explain_batch, encode_grid
    out, maps = explain_batch(bundle.model, bundle.arch, images_uint8, bundle.normalizer)
    blob = encode_grid(maps[0])  # float16 bytes for the database; decode_grid reads them back

`explain_batch` runs one forward pass per chunk and returns both the model's output (so a
scorer needs no second pass for P(PNEUMONIA)) and one small map per image: Grad-CAM
(Selvaraju et al. 2017) at the layer named in TARGET_LAYERS, or gradient x input for the MLP,
which has no spatial layer. Backward runs only from the pneumonia logit down to that layer: the
layers before it run without autograd and no weight gradient is ever computed, so a map costs
a fraction of a second pass (benchmarks/explain_faithfulness.py measures it).

`deletion_drop` and `randomization_check` measure faithfulness: blurring the hottest pixels
must lower P(PNEUMONIA) more than blurring as many pixels elsewhere, and a model with random
weights must give different maps (Adebayo et al. 2018).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
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


def encode_grid(map2d: torch.Tensor) -> bytes:
    """A (h, w) map as float16, row-major, little-endian bytes (2 bytes a cell)."""
    if map2d.dim() != 2:
        raise ValueError(f"expected a (h, w) map, got shape {tuple(map2d.shape)}")
    values = map2d.detach().to("cpu", torch.float16).contiguous().numpy()
    return values.astype("<f2", copy=False).tobytes()


def decode_grid(data: bytes, height: int, width: int) -> torch.Tensor:
    """encode_grid's bytes back to a (height, width) float32 map (exact for float16 values)."""
    if len(data) != 2 * height * width:
        raise ValueError(f"{len(data)} bytes do not hold a {height}x{width} float16 grid")
    values = np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(height, width)
    return torch.from_numpy(values)


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
        total += weight * _resize(member, (height, width))
    return _unit_max(total / w.sum())


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) -> (N, *size), bilinear, align_corners=False."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps.float()
    resized = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)
    return resized[:, 0]


# --- faithfulness ---------------------------------------------------------------------------


@torch.inference_mode()
def _logits(
    model: nn.Module, images_uint8: torch.Tensor, normalizer: Normalizer, batch_size: int = 64
) -> torch.Tensor:
    """The (N,) pneumonia logit of a uint8 batch, for any head, as float on the CPU."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = []
    for start in range(0, images_uint8.shape[0], batch_size):
        x = normalizer(images_uint8[start : start + batch_size].to(device))
        x = x.contiguous(memory_format=torch.channels_last)
        out.append(pneumonia_logit(model(x)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def blurred(images_uint8: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A strongly blurred copy (Gaussian, sigma = side / 8 by default), edges replicated."""
    size = images_uint8.shape[-1]
    sigma = sigma or max(size / 8, 1.0)
    radius = min(int(3 * sigma), size - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images_uint8.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).expand(3, 1, -1)  # one 1-D kernel per colour channel
    x = images_uint8.float()
    rows = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[..., None, :], groups=3
    )
    both = F.conv2d(
        F.pad(rows, (0, 0, radius, radius), mode="replicate"), kernel[..., None], groups=3
    )
    return both.round().clamp(0, 255).to(torch.uint8)


def _filler(images_uint8: torch.Tensor, fill: str) -> torch.Tensor:
    """What a deleted pixel becomes: "blur" (the blurred image) or "mean" (its mean grey)."""
    if fill == "blur":
        return blurred(images_uint8)
    if fill == "mean":
        mean = images_uint8.float().mean(dim=(1, 2, 3), keepdim=True).round()
        return mean.expand_as(images_uint8).to(torch.uint8)
    raise ValueError(f"unknown fill {fill!r}; choose blur or mean")


def hottest_mask(maps: torch.Tensor, size: tuple[int, int], fraction: float) -> torch.Tensor:
    """(N, H, W) bool: the `fraction` of pixels where each upsampled map is hottest."""
    up = _resize(maps, size).flatten(1)
    k = max(1, round(fraction * up.shape[1]))
    mask = torch.zeros_like(up, dtype=torch.bool)
    mask.scatter_(1, up.topk(k, dim=1).indices, True)
    return mask.view(-1, *size)


def _random_placements(mask: torch.Tensor, placements: int, seed: int) -> list[torch.Tensor]:
    """The same mask shapes, each image's rolled (wrapping) by its own random offset."""
    gen = torch.Generator().manual_seed(seed)
    rolled = []
    for _ in range(placements):
        shifts = torch.randint(0, max(mask.shape[1:]), (mask.shape[0], 2), generator=gen)
        pairs = zip(mask, shifts.tolist(), strict=True)
        rolled.append(torch.stack([m.roll(tuple(s), dims=(0, 1)) for m, s in pairs]))
    return rolled


def deletion_drop(
    model: nn.Module,
    images_uint8: torch.Tensor,
    normalizer: Normalizer,
    maps: torch.Tensor,
    fraction: float = 0.1,
    placements: int = 5,
    seed: int = 0,
    fill: str = "blur",
) -> dict[str, float]:
    """How much P(PNEUMONIA) falls when the hottest `fraction` of pixels are deleted (replaced
    by a blurred copy, or with fill="mean" by the image's mean grey), against the same mask
    shape rolled to `placements` random offsets per image (seeded).

    Returns "n"; "hot_drop", "random_drop" (mean drops of P) and "ratio" (hot / random: inf
    when random deletion costs nothing and hot deletion does, nan when neither costs). P
    saturates near 1, which hides most of a confident model's drop, so also the same drops of
    the logit ("hot_logit_drop", "random_logit_drop") and "win_rate": the share of images
    whose logit falls more from the hot deletion than from the random ones on average."""
    if images_uint8.shape[0] == 0:
        raise ValueError("deletion_drop needs at least one image")
    mask = hottest_mask(maps, tuple(images_uint8.shape[-2:]), fraction)
    filler = _filler(images_uint8, fill)
    base = _logits(model, images_uint8, normalizer)

    def drops(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = _logits(model, torch.where(m[:, None], filler, images_uint8), normalizer)
        return torch.sigmoid(base) - torch.sigmoid(logit), base - logit

    hot_p, hot_logit = drops(mask)
    rand = [drops(m) for m in _random_placements(mask, placements, seed)]
    rand_p = torch.stack([p for p, _ in rand]).mean(0)
    rand_logit = torch.stack([lg for _, lg in rand]).mean(0)
    hot, rnd = float(hot_p.mean()), float(rand_p.mean())
    return {
        "n": int(mask.shape[0]),
        "hot_drop": hot,
        "random_drop": rnd,
        "ratio": _ratio(hot, rnd),
        "hot_logit_drop": float(hot_logit.mean()),
        "random_logit_drop": float(rand_logit.mean()),
        "win_rate": float((hot_logit > rand_logit).float().mean()),
    }


def _ratio(hot: float, rand: float) -> float:
    if rand > 1e-12:
        return hot / rand
    return math.inf if hot > 1e-12 else math.nan


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing their mean rank. Ties matter here:
    ReLU leaves many exact zeros, and ranking them by position would invent correlation."""
    ordered, order = values.double().sort()
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    mean_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2
    ranks = torch.empty_like(ordered)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally sized tensors; nan when either is constant."""
    ra, rb = average_ranks(a.flatten()), average_ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else math.nan


def randomization_check(
    model_trained: nn.Module,
    model_random: nn.Module,
    arch: str,
    images: torch.Tensor,
    normalizer: Normalizer,
) -> dict[str, float]:
    """Model-randomisation sanity check (Adebayo et al. 2018): the mean Spearman correlation
    between each image's map from the trained model and from the same arch with random
    weights, both upsampled to the input size. Near 1 would mean the maps show the image,
    not what the model learned. Images where either map is constant are left out of "n"."""
    size = tuple(images.shape[-2:])
    trained = _resize(explain_batch(model_trained, arch, images, normalizer)[1], size)
    random = _resize(explain_batch(model_random, arch, images, normalizer)[1], size)
    rhos = [spearman(t, r) for t, r in zip(trained, random, strict=True)]
    rhos = [r for r in rhos if not math.isnan(r)]
    mean = sum(rhos) / len(rhos) if rhos else math.nan
    return {"n": len(rhos), "spearman_mean": mean}
