import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from training.data.preprocess import Normalizer
from training.explain.gradcam import (
    INPUT,
    TARGET_LAYERS,
    average_ranks,
    blurred,
    combine_maps,
    decode_grid,
    deletion_drop,
    encode_grid,
    explain_batch,
    hottest_mask,
    randomization_check,
    spearman,
)
from training.models.registry import create_model, list_models
from training.scoring.inference import fold_batchnorm

# The smallest input each arch takes and still keeps a spatial grid at its target layer.
SIZES = {"mlp": 16, "cnn": 16, "efficientnet_lite0": 32}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # These tensors are tiny: a second thread gains nothing, and on a busy machine threads
    # waiting for each other made the module 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def _served(arch: str, size: int, kind_head: str = "none") -> nn.Module:
    torch.manual_seed(0)
    model = create_model(arch, img_size=size, kind_head=kind_head).eval()
    return model.to(memory_format=torch.channels_last)


def _plain_output(model: nn.Module, images: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    with torch.inference_mode():
        return model(norm(images).contiguous(memory_format=torch.channels_last)).float()


def test_every_registered_arch_has_a_target_layer() -> None:
    assert set(list_models()) <= set(TARGET_LAYERS)
    assert TARGET_LAYERS["mlp"] == INPUT


@pytest.mark.parametrize("arch", list_models())
def test_maps_are_unit_scaled_grids_and_the_output_is_plain_inference(arch: str) -> None:
    size = SIZES.get(arch, 64)
    model, images, norm = _served(arch, size), _images(3, size), Normalizer()
    out, maps = explain_batch(model, arch, images, norm)
    assert maps.dtype == torch.float32 and maps.dim() == 3 and maps.shape[0] == 3
    assert 1 <= maps.shape[1] <= size and maps.shape[1] == maps.shape[2]
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.flatten(1).amax(1)
    assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones(3)))
    assert torch.allclose(out, _plain_output(model, images, norm), atol=1e-5)


def test_grids_at_64_px_keep_space_where_the_last_block_has_none() -> None:
    expected = {"cnn": 8, "googlenet": 8, "resnet50": 8, "efficientnet_lite0": 4, "mlp": 16}
    for arch, side in expected.items():
        _, maps = explain_batch(_served(arch, 64), arch, _images(1, 64), Normalizer())
        assert tuple(maps.shape[1:]) == (side, side), arch


@pytest.mark.parametrize("kind_head", ["two", "three"])
def test_kind_heads_return_their_whole_output_and_a_map(kind_head: str) -> None:
    model, images = _served("cnn", 16, kind_head), _images(2, 16)
    out, maps = explain_batch(model, "cnn", images, Normalizer())
    assert out.shape == (2, 2 if kind_head == "two" else 3)
    assert torch.allclose(out, _plain_output(model, images, Normalizer()), atol=1e-5)
    assert maps.shape[0] == 2 and maps.max() <= 1


def _randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Non-trivial statistics, so folding them changes the convolutions' weights."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


@pytest.mark.parametrize("arch", ["cnn", "resnet50", "googlenet"])
def test_folded_model_gives_the_same_maps(arch: str) -> None:
    size = SIZES.get(arch, 64)
    model = _randomise_batch_norms(_served(arch, size))
    images = _images(4, size)
    out, maps = explain_batch(model, arch, images, Normalizer())
    out_f, maps_f = explain_batch(fold_batchnorm(model), arch, images, Normalizer())
    assert torch.allclose(out, out_f, atol=1e-4)
    # float rounding through ~50 layers moves a cell by up to ~0.01 of the peak
    assert torch.allclose(maps, maps_f, atol=2e-2)
    assert (maps - maps_f).abs().mean() < 2e-3


def test_chunks_give_the_same_result_as_one_batch() -> None:
    model, images = _served("cnn", 16), _images(7, 16)
    out, maps = explain_batch(model, "cnn", images, Normalizer())
    out_c, maps_c = explain_batch(model, "cnn", images, Normalizer(), batch_size=3)
    assert torch.allclose(out, out_c, atol=1e-6) and torch.allclose(maps, maps_c, atol=1e-6)


def test_model_is_left_as_it_was_no_hooks_no_gradients_same_flags() -> None:
    model = _served("cnn", 16).train()
    frozen = {name for name, _ in list(model.named_parameters())[:2]}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    explain_batch(model, "cnn", _images(2, 16), Normalizer())
    assert model.training
    for name, p in model.named_parameters():
        assert p.requires_grad == (name not in frozen) and p.grad is None, name
    assert not any(m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()


def test_hooks_are_removed_when_the_forward_fails() -> None:
    model = _served("cnn", 16)
    with pytest.raises(RuntimeError):
        explain_batch(model, "cnn", _images(1, 16)[:, :2], Normalizer((0.5,) * 2, (0.5,) * 2))
    assert not any(m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()


def test_works_inside_inference_mode_or_no_grad_and_on_weights_made_there() -> None:
    images, norm = _images(2, 16), Normalizer()
    model = _served("cnn", 16)
    expected = explain_batch(model, "cnn", images, norm)
    with torch.inference_mode():
        copy = create_model("cnn", img_size=16).eval()
        copy.load_state_dict(model.state_dict())
        inside = explain_batch(model, "cnn", images, norm)
    assert next(copy.parameters()).is_inference()
    outside = explain_batch(copy, "cnn", images, norm)
    with torch.no_grad():
        no_grad = explain_batch(model, "cnn", images, norm)
    for got in (inside, outside, no_grad):
        assert torch.allclose(got[0], expected[0], atol=1e-5)
        assert torch.allclose(got[1], expected[1], atol=1e-5)


def test_threads_sharing_one_model_get_their_own_maps() -> None:
    """A served model is shared by a process's threads: one thread's hook must not touch
    another thread's forward, whether that one explains or only scores."""
    from concurrent.futures import ThreadPoolExecutor

    from training.scoring.inference import predict_proba

    model, norm = _served("cnn", 16), Normalizer()
    batches = [_images(8, 16, seed) for seed in range(6)]
    expected = [explain_batch(model, "cnn", b, norm)[1] for b in batches]
    probs = [predict_proba(model, b, norm) for b in batches]
    with ThreadPoolExecutor(3) as pool:
        maps = pool.map(lambda b: explain_batch(model, "cnn", b, norm)[1], batches * 3)
        scored = pool.map(lambda b: predict_proba(model, b, norm), batches * 3)
        for got, want in zip(maps, expected * 3, strict=True):
            assert torch.allclose(got, want, atol=1e-5)
        for got, want in zip(scored, probs * 3, strict=True):
            assert torch.allclose(got, want, atol=1e-6)


def test_empty_batch() -> None:
    out, maps = explain_batch(_served("cnn", 16), "cnn", _images(0, 16), Normalizer())
    assert out.numel() == 0 and maps.numel() == 0


def test_unknown_arch_without_a_layer_fails_loudly() -> None:
    with pytest.raises(KeyError, match="no heatmap layer"):
        explain_batch(_served("cnn", 16), "vgg", _images(1, 16), Normalizer())


def test_grid_bytes_round_trip_exactly_as_little_endian_float16() -> None:
    grid = torch.rand(5, 7).half().float()
    data = encode_grid(grid)
    assert len(data) == 2 * 5 * 7
    assert torch.equal(decode_grid(data, 5, 7), grid)
    assert encode_grid(torch.tensor([[1.0, 0.0]])) == b"\x00\x3c\x00\x00"
    with pytest.raises(ValueError, match="do not hold"):
        decode_grid(data, 5, 6)


def test_combine_maps_resizes_to_the_largest_grid_and_weighs_members() -> None:
    small, large = torch.rand(2, 4, 4), torch.rand(2, 8, 8)
    assert combine_maps([small, large], [1.0, 0.0]).shape == (2, 8, 8)
    # weight 0 (or negative): no influence at all
    only_large = large / large.flatten(1).amax(1).view(2, 1, 1)
    assert torch.allclose(combine_maps([small, large], [0.0, 2.0]), only_large)
    assert torch.allclose(combine_maps([small, large], [-1.0, 0.5]), only_large)
    # all weights zero: a plain mean; and every image renormalised to a maximum of 1
    mean = combine_maps([small, large], [0.0, 0.0])
    assert torch.allclose(mean, combine_maps([small, large], [1.0, 1.0]))
    assert torch.allclose(mean.flatten(1).amax(1), torch.ones(2))
    # heavier weight, closer to that member
    tilted = combine_maps([small, large], [1.0, 9.0])
    assert (tilted - only_large).abs().mean() < (mean - only_large).abs().mean()
    assert combine_maps([torch.zeros(1, 2, 2)], [1.0]).eq(0).all()


def test_spearman_with_average_ranks_for_ties() -> None:
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 0.0])).tolist() == [3.5, 2.0, 3.5, 1.0]
    a = torch.rand(50)
    assert spearman(a, a.exp()) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(spearman(a, torch.zeros(50)))
    # many tied zeros in both maps must not look like agreement
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(400, generator=gen), torch.rand(400, generator=gen)
    x[:300], y[:300] = 0, 0
    assert abs(spearman(x[torch.randperm(400, generator=gen)], y)) < 0.15


def test_unknown_fill_is_refused() -> None:
    model = _served("cnn", 16)
    with pytest.raises(ValueError, match="unknown fill"):
        deletion_drop(model, _images(1, 16), Normalizer(), torch.rand(1, 2, 2), fill="black")


def test_hottest_mask_and_blur() -> None:
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 1.0
    mask = hottest_mask(maps, (16, 16), 0.05)
    assert mask.sum() == round(0.05 * 256) and mask[0, 0, 0]
    images = _images(2, 16)
    soft = blurred(images)
    assert soft.dtype == torch.uint8 and soft.shape == images.shape
    assert soft.float().std() < 0.5 * images.float().std()


# --- faithfulness on a model whose evidence is known -----------------------------------------

SIDE, BLOB = 24, 6


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),  # body.4: the Grad-CAM layer, 12x12
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten()


def _blob_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy dark images; the positive half has a bright BLOBxBLOB square somewhere, the one
    thing that tells the classes apart. Returns (images, labels, top-left corners)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(20, 90, (n, 1, SIDE, SIDE), generator=gen).float()
    labels = torch.arange(n) % 2
    corners = torch.randint(0, SIDE - BLOB + 1, (n, 2), generator=gen)
    for i in range(n):
        if labels[i]:
            y, x = corners[i].tolist()
            images[i, :, y : y + BLOB, x : x + BLOB] = 230
    return images.expand(n, 3, SIDE, SIDE).to(torch.uint8), labels, corners


@pytest.fixture(scope="module")
def blob_model() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    images, labels, _ = _blob_images(128, seed=1)
    x, y = Normalizer()(images), labels.float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    return model.eval()


def _positives(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels, corners = _blob_images(2 * n, seed=2)
    return images[labels == 1], corners[labels == 1]


def test_gradcam_is_hottest_on_the_blob(blob_model: TinyNet) -> None:
    images, corners = _positives()
    out, maps = explain_batch(blob_model, "tiny", images, Normalizer(), layer="body.4")
    assert torch.sigmoid(out).mean() > 0.9  # the tiny model did learn the blob
    up = nn.functional.interpolate(maps[:, None], size=(SIDE, SIDE), mode="bilinear")[:, 0]
    hits = 0
    for heat, (y, x) in zip(up, corners.tolist(), strict=True):
        py, px = divmod(int(heat.argmax()), SIDE)
        hits += y - 1 <= py <= y + BLOB and x - 1 <= px <= x + BLOB
    assert hits >= 0.9 * len(images)


def test_deletion_of_the_hot_pixels_costs_far_more_than_deleting_elsewhere(
    blob_model: TinyNet,
) -> None:
    images, _ = _positives()
    norm = Normalizer()
    _, maps = explain_batch(blob_model, "tiny", images, norm, layer="body.4")
    faithful = deletion_drop(blob_model, images, norm, maps)
    assert faithful["n"] == len(images)
    assert faithful["hot_drop"] > 0.3 and faithful["ratio"] > 3, faithful
    assert faithful["win_rate"] > 0.9 and faithful["hot_logit_drop"] > 0, faithful
    greyed = deletion_drop(blob_model, images, norm, maps, fill="mean")
    assert greyed["ratio"] > 3 and greyed["win_rate"] > 0.9, greyed
    inverted = deletion_drop(blob_model, images, norm, 1 - maps)
    assert inverted["ratio"] < 1, inverted
    noise = torch.rand(maps.shape, generator=torch.Generator().manual_seed(0))
    assert deletion_drop(blob_model, images, norm, noise)["ratio"] < 3


def test_randomization_check_separates_trained_from_random_weights(blob_model: TinyNet) -> None:
    images, _ = _positives(20)
    norm = Normalizer()
    itself = _randomization(blob_model, blob_model, images, norm)
    assert itself["n"] == len(images) and itself["spearman_mean"] == pytest.approx(1.0)
    torch.manual_seed(3)
    random = _randomization(blob_model, TinyNet().eval(), images, norm)
    assert random["spearman_mean"] < 0.8, random


def _randomization(a: nn.Module, b: nn.Module, images: torch.Tensor, norm: Normalizer) -> dict:
    # TinyNet is no registered arch: point the check at its layer for the test's duration.
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(TARGET_LAYERS, "tiny", "body.4")
        return randomization_check(a, b, "tiny", images, norm)
