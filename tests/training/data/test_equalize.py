from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_xray
from training.data.equalize import clahe, equalize
from training.data.preprocess import Normalizer, decode_image
from training.models.checkpoint import ModelBundle, from_bytes, to_bytes
from training.models.registry import create_model
from training.scoring.files import score_files_multi


def _dim_gradient(h: int = 96, w: int = 80) -> np.ndarray:
    """A low-contrast image: values 100-131 only."""
    return (100 + (np.arange(h)[:, None] + np.arange(w)[None, :]) % 32).astype(np.uint8)


def test_clahe_stretches_a_low_contrast_image_and_keeps_its_shape_and_order() -> None:
    img = _dim_gradient()
    out = clahe(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert int(out.max()) - int(out.min()) > 2 * (int(img.max()) - int(img.min()))
    # Brighter stays brighter: a dark half and a bright half keep their order everywhere.
    halves = np.full((64, 64), 100, np.uint8)
    halves[:, 32:] = 130
    mapped = clahe(halves).astype(int)
    assert mapped[:, :32].max() < mapped[:, 32:].min()


def test_clahe_is_limited_where_global_equalisation_is_not() -> None:
    img = _dim_gradient()
    limited = clahe(img, clip_limit=1.0).std()
    assert limited < np.asarray(equalize(Image.fromarray(img), "hist")).std()


def test_unknown_mode_fails_loudly() -> None:
    with pytest.raises(ValueError, match="clahe"):
        equalize(Image.new("L", (8, 8)), "gamma")


def test_decode_applies_the_mode_and_none_is_unchanged(tmp_path: Path) -> None:
    path = make_xray(tmp_path / "x.jpeg", True, 0, size=300)
    plain = decode_image(path, 64)
    assert torch.equal(decode_image(path, 64, "none"), plain)
    mapped = decode_image(path, 64, "clahe")
    assert mapped.shape == plain.shape and not torch.equal(mapped, plain)
    assert torch.equal(mapped[0], mapped[2])  # still grey


def test_serving_decodes_with_the_mode_stored_in_the_model(tmp_path: Path) -> None:
    """Training and serving share one decode: a bundle saved with equalize="clahe" scores a
    file exactly as its own predict on a clahe-decoded tensor does."""
    path = make_xray(tmp_path / "x.jpeg", True, 0, size=300)
    torch.manual_seed(0)
    model = create_model("cnn", img_size=32).eval()
    bundle = from_bytes(to_bytes(ModelBundle(model, "cnn", 32, Normalizer(), equalize="clahe")))
    assert bundle.equalize == "clahe"
    served = score_files_multi([bundle], [str(path)]).probs
    with torch.no_grad():
        x = Normalizer()(decode_image(path, 32, "clahe")[None])
        direct = torch.sigmoid(bundle.model(x.contiguous(memory_format=torch.channels_last)))
    plain = decode_image(path, 32)
    with torch.no_grad():
        unmapped = torch.sigmoid(bundle.model(Normalizer()(plain[None])))
    assert served[0, 0].item() == pytest.approx(direct.item(), abs=1e-6)
    assert served[0, 0].item() != pytest.approx(unmapped.item(), abs=1e-6)
