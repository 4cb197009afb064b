"""Grad-CAM maps: one forward pass per chunk, the plain output, the model left as it was."""

import pytest
import torch
from torch import nn

from tests.helpers import random_batch, served_model
from training.data.preprocess import Normalizer
from training.explain.gradcam import INPUT, TARGET_LAYERS, combine_maps, explain_batch
from training.models.registry import create_model, list_models
from training.scoring.inference import fold_batchnorm

# The smallest input each arch takes and still keeps a spatial grid at its target layer.
SIZES = {"mlp": 16, "cnn": 16, "efficientnet_lite0": 32}


def _plain_output(model: nn.Module, images: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    with torch.inference_mode():
        return model(norm(images).contiguous(memory_format=torch.channels_last)).float()


def test_every_registered_arch_has_a_target_layer() -> None:
    assert set(list_models()) <= set(TARGET_LAYERS)
    assert TARGET_LAYERS["mlp"] == INPUT


@pytest.mark.parametrize("arch", list_models())
def test_maps_are_unit_scaled_grids_and_the_output_is_plain_inference(arch: str) -> None:
    size = SIZES.get(arch, 64)
    model, images, norm = served_model(arch, size), random_batch(3, size), Normalizer()
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
        _, maps = explain_batch(served_model(arch, 64), arch, random_batch(1, 64), Normalizer())
        assert tuple(maps.shape[1:]) == (side, side), arch


@pytest.mark.parametrize("kind_head", ["two", "three"])
def test_kind_heads_return_their_whole_output_and_a_map(kind_head: str) -> None:
    model, images = served_model("cnn", 16, kind_head), random_batch(2, 16)
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
    model = _randomise_batch_norms(served_model(arch, size))
    images = random_batch(4, size)
    out, maps = explain_batch(model, arch, images, Normalizer())
    out_f, maps_f = explain_batch(fold_batchnorm(model), arch, images, Normalizer())
    assert torch.allclose(out, out_f, atol=1e-4)
    # float rounding through ~50 layers moves a cell by up to ~0.01 of the peak
    assert torch.allclose(maps, maps_f, atol=2e-2)
    assert (maps - maps_f).abs().mean() < 2e-3


def test_chunks_give_the_same_result_as_one_batch() -> None:
    model, images = served_model("cnn", 16), random_batch(7, 16)
    out, maps = explain_batch(model, "cnn", images, Normalizer())
    out_c, maps_c = explain_batch(model, "cnn", images, Normalizer(), batch_size=3)
    assert torch.allclose(out, out_c, atol=1e-6) and torch.allclose(maps, maps_c, atol=1e-6)


def test_model_is_left_as_it_was_no_hooks_no_gradients_same_flags() -> None:
    model = served_model("cnn", 16).train()
    frozen = {name for name, _ in list(model.named_parameters())[:2]}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    explain_batch(model, "cnn", random_batch(2, 16), Normalizer())
    assert model.training
    for name, p in model.named_parameters():
        assert p.requires_grad == (name not in frozen) and p.grad is None, name
    assert not any(m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()


def test_hooks_are_removed_when_the_forward_fails() -> None:
    model = served_model("cnn", 16)
    with pytest.raises(RuntimeError):
        explain_batch(model, "cnn", random_batch(1, 16)[:, :2], Normalizer((0.5,) * 2, (0.5,) * 2))
    assert not any(m._forward_hooks for m in model.modules())
    assert torch.is_grad_enabled()


def test_works_inside_inference_mode_or_no_grad_and_on_weights_made_there() -> None:
    images, norm = random_batch(2, 16), Normalizer()
    model = served_model("cnn", 16)
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

    model, norm = served_model("cnn", 16), Normalizer()
    batches = [random_batch(8, 16, seed) for seed in range(6)]
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
    out, maps = explain_batch(served_model("cnn", 16), "cnn", random_batch(0, 16), Normalizer())
    assert out.numel() == 0 and maps.numel() == 0


def test_unknown_arch_without_a_layer_fails_loudly() -> None:
    with pytest.raises(KeyError, match="no heatmap layer"):
        explain_batch(served_model("cnn", 16), "vgg", random_batch(1, 16), Normalizer())


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
