import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_xray
from training.data import preprocess
from training.data.preprocess import ImageDecodeError, Normalizer, decode_image, decode_many


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
    from training.models.checkpoint import ModelBundle, from_bytes, to_bytes
    from training.models.registry import create_model

    img = Image.new("L", (200, 100), 255)  # a white frame around a black centre
    img.paste(0, (40, 20, 160, 80))
    path = tmp_path / "framed.png"
    img.save(path)
    assert decode_image(path, 16).float().mean() > 60
    assert decode_image(path, 16, crop=0.6).float().mean() < 5  # 120x60 centre: all black
    model = create_model("cnn", img_size=16)
    bundle = from_bytes(to_bytes(ModelBundle(model, "cnn", 16, Normalizer(), crop=0.6)))
    assert bundle.crop == 0.6


def _save_16bit(values: np.ndarray, path: Path) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode == "I;16"  # what PIL opens a 16-bit grayscale PNG as
    return path


def test_a_16_bit_copy_decodes_like_the_8_bit_original(tmp_path: Path) -> None:
    original = make_xray(tmp_path / "x8.png", True, 0, size=128)
    with Image.open(original) as img:
        values = np.asarray(img).astype(np.uint32) * 257  # 0..255 -> 0..65535
    copy16 = _save_16bit(values, tmp_path / "x16.png")
    diff = decode_image(copy16, 64).int() - decode_image(original, 64).int()
    assert diff.abs().max() <= 1


def test_a_12_bit_image_fills_the_8_bit_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4095, 256).round(), (64, 1))  # a 12-bit detector's range
    out = decode_image(_save_16bit(ramp, tmp_path / "x12.png"), 32).float()
    assert out.min() <= 5 and out.max() >= 250
    assert 110 < out.mean() < 145  # a ramp, not clipped to white


@pytest.mark.parametrize("mode", ["LA", "P", "RGBA", "CMYK", "1", "I", "F"])
def test_other_modes_decode(tmp_path: Path, mode: str) -> None:
    gray = Image.open(make_xray(tmp_path / "x.png", True, 0, size=64))
    if mode == "I":  # a 32-bit TIFF holding 12-bit values
        img = Image.fromarray(np.asarray(gray).astype(np.int32) * 16)
    elif mode == "F":  # a float TIFF scaled 0-1
        img = Image.fromarray(np.asarray(gray).astype(np.float32) / 255)
    else:
        img = gray.convert(mode)
    suffix = {"CMYK": "jpeg", "I": "tiff", "F": "tiff"}.get(mode, "png")
    img.save(tmp_path / f"y.{suffix}")
    out = decode_image(tmp_path / f"y.{suffix}", 32)
    assert out.shape == (3, 32, 32) and out.float().std() > 10
    if mode in ("I", "F"):
        assert (out.int() - decode_image(tmp_path / "x.png", 32).int()).abs().max() <= 1


def test_a_100_megapixel_jpeg_decodes_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpeg"
    Image.new("L", (10_000, 10_000), 128).save(path)  # solid: a few hundred kB on disk
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (PIL's decompression bomb) fails
        out = decode_image(path, 64)
    assert out.shape == (3, 64, 64) and abs(out.float().mean().item() - 128) < 2


def test_images_past_the_pixel_limit_are_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 100 * 100)
    Image.new("L", (120, 100), 0).save(tmp_path / "big.png")  # decoded whole: refused
    Image.new("L", (240, 240), 0).save(tmp_path / "jpeg.jpeg")  # drafted to 60 x 60: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageDecodeError, match=r"^image too large: 120 x 100 pixels, limit"):
            decode_image(tmp_path / "big.png", 16)
        assert decode_image(tmp_path / "jpeg.jpeg", 16).shape == (3, 16, 16)
        with pytest.raises(ImageDecodeError, match="240 x 240 pixels"):
            decode_image(tmp_path / "jpeg.jpeg", 100)  # drafted no smaller than 200 x 200


def test_streamed_batches_hold_what_decode_many_gives(tmp_path: Path) -> None:
    """The GPU path decodes ahead in a stream: same pixels, positions and errors by batch."""
    from training.data.preprocess import stream_decode

    paths = [make_xray(tmp_path / f"x{i}.png", i % 2 == 0, seed=i) for i in range(7)]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.insert(4, tmp_path / "bad.png")
    streamed = list(stream_decode(paths, 32, batch=3, threads=2, crop=0.9))
    assert [start for start, _ in streamed] == [0, 3, 6]
    for start, got in streamed:
        want = decode_many(paths[start : start + 3], 32, crop=0.9)
        assert got.ok_index == want.ok_index and got.errors == want.errors
        assert torch.equal(got.tensor, want.tensor)
    assert set(streamed[1][1].errors) == {1}  # bad.png, position 4 = batch 1, index 1


def test_a_stream_left_early_does_not_wait_for_the_rest(tmp_path: Path) -> None:
    from training.data.preprocess import stream_decode

    paths = [make_xray(tmp_path / f"x{i}.png", True, seed=i) for i in range(40)]
    stream = stream_decode(paths, 32, batch=2, threads=1)
    start, first = next(stream)
    stream.close()  # cancels what was queued ahead
    assert start == 0 and first.tensor.shape == (2, 3, 32, 32)
