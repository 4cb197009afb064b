import pytest

from training.fitting.config import UnknownPresetError, make_config


def test_unknown_preset() -> None:
    with pytest.raises(UnknownPresetError, match="seed"):
        make_config("cnn", preset="fancy")


def test_hires_is_224_px_and_starts_lite0_from_its_shipped_weights() -> None:
    lite0 = make_config("efficientnet_lite0", preset="hires")
    assert (lite0.img_size, lite0.pretrained, lite0.crop) == (224, True, 0.85)
    # Archs whose weights would need a download train from scratch; the small ones at 128 px.
    assert (
        make_config("googlenet", "hires").img_size,
        make_config("googlenet", "hires").pretrained,
    ) == (224, False)
    assert make_config("mlp", "hires").img_size == make_config("cnn", "hires").img_size == 128
    assert make_config("mlp", "hires", img_size=96).img_size == 96  # options still win
    assert make_config("efficientnet_lite0").img_size == 64  # never the default
