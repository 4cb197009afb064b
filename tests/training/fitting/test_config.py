import pytest

from training.fitting.config import UnknownPresetError, make_config


def test_unknown_preset() -> None:
    with pytest.raises(UnknownPresetError, match="seed"):
        make_config("cnn", preset="fancy")
