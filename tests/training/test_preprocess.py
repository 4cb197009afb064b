from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import make_xray
from training.preprocess import ImageDecodeError, Normalizer, decode_image, decode_many


@pytest.mark.parametrize(("mode", "suffix"), [("L", "jpeg"), ("RGB", "jpg"), ("RGBA", "png")])
def test_any_common_image_becomes_3x_size_uint8(tmp_path: Path, mode: str, suffix: str) -> None:
    path = make_xray(tmp_path / f"x.{suffix}", True, 0, size=300, mode=mode)
    out = decode_image(path, 64)
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    if mode == "L":  # grey stays grey: the three channels are copies
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_reduced_decode_stays_close_to_a_full_decode(tmp_path: Path) -> None:
    path = make_xray(tmp_path / "big.jpeg", True, 0, size=1024)
    fast = decode_image(path, 64).float()
    with Image.open(path) as img:
        full = img.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    full_t = torch.frombuffer(bytearray(full.tobytes()), dtype=torch.uint8).view(64, 64, 3)
    assert (fast - full_t.permute(2, 0, 1).float()).abs().mean() < 3.0


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = make_xray(tmp_path / "good.jpeg", False, 0, size=200)
    truncated = tmp_path / "truncated.jpeg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.jpeg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    return {"truncated": truncated, "empty": empty, "text": text, "missing": tmp_path / "no.jpg"}


def test_unreadable_files_raise_one_line_errors(tmp_path: Path) -> None:
    for path in _bad_files(tmp_path).values():
        with pytest.raises(ImageDecodeError) as info:
            decode_image(path, 32)
        assert "\n" not in str(info.value) and str(info.value)


def test_decode_many_keeps_the_good_and_names_the_bad(tmp_path: Path) -> None:
    bad = list(_bad_files(tmp_path).values())
    good = [make_xray(tmp_path / f"g{i}.jpeg", i % 2 == 0, i) for i in range(3)]
    paths = [good[0], bad[0], good[1], bad[1], bad[2], good[2], bad[3]]
    batch = decode_many(paths, 32, threads=2)
    assert batch.ok_index == [0, 2, 5]
    assert sorted(batch.errors) == [1, 3, 4, 6]
    assert batch.tensor.shape == (3, 3, 32, 32)
    assert torch.equal(batch.tensor[1], decode_image(good[1], 32))


def test_normalizer_uses_imagenet_statistics() -> None:
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = Normalizer()(x)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out[0, :, 0, 0], expected)


def test_crop_keeps_the_centre_and_travels_with_the_model(tmp_path: Path) -> None:
    from training.checkpoint import ModelBundle, from_bytes, to_bytes
    from training.models import create_model

    img = Image.new("L", (200, 100), 255)  # a white frame around a black centre
    img.paste(0, (40, 20, 160, 80))
    path = tmp_path / "framed.png"
    img.save(path)
    assert decode_image(path, 16).float().mean() > 60
    assert decode_image(path, 16, crop=0.6).float().mean() < 5  # 120x60 centre: all black
    model = create_model("cnn", img_size=16)
    bundle = from_bytes(to_bytes(ModelBundle(model, "cnn", 16, Normalizer(), crop=0.6)))
    assert bundle.crop == 0.6
