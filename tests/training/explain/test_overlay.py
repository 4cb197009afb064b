"""A stored heatmap grid back on the original X-ray: its hottest box and its overlay PNG."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.explain import overlay
from training.explain.overlay import (
    BOX_COLOUR,
    HeatmapImageError,
    colormap,
    crop_region,
    hottest_box,
    render_overlay,
)


def one_hot(height: int, width: int, row: int, col: int, value: float = 1.0) -> list[float]:
    grid = [0.0] * (height * width)
    grid[row * width + col] = value
    return grid


def cell_box(region: tuple[int, int, int, int], height: int, width: int, row: int, col: int):
    """A grid cell's pixels inside a region whose sides are whole multiples of the grid's."""
    left, top, right, bottom = region
    cw, ch = (right - left) // width, (bottom - top) // height
    return left + col * cw, top + row * ch, left + (col + 1) * cw, top + (row + 1) * ch


def grey_png(path: Path, size: tuple[int, int], level: int = 90) -> Path:
    Image.new("L", size, level).save(path)
    return path


# crop_region mirrors the model's own crop


@pytest.mark.parametrize("size", [(400, 300), (1001, 777), (5, 3), (2, 2), (3000, 2400)])
@pytest.mark.parametrize("crop", [1.0, 0.9, 0.875, 0.8, 0.5, 0.33])
def test_crop_region_is_the_models_central_box(size: tuple[int, int], crop: float) -> None:
    from training.data.crop import central_box

    assert crop_region(size, crop) == central_box(size, crop)


def test_crop_region_rejects_a_crop_outside_0_1() -> None:
    with pytest.raises(ValueError):
        crop_region((10, 10), 0.0)
    with pytest.raises(ValueError):
        crop_region((10, 10), 1.5)


# hottest_box


@pytest.mark.parametrize("row,col", [(1, 2), (0, 0), (3, 3), (2, 0)])
def test_a_single_hot_cell_boxes_exactly_that_cell(row: int, col: int) -> None:
    # Bilinear spread of one hot cell crosses half its peak exactly at the cell's borders.
    box = hottest_box(one_hot(4, 4, row, col), 4, 4, (400, 300))
    assert box == cell_box((0, 0, 400, 300), 4, 4, row, col)


def test_the_box_follows_the_crop_offset_and_scale() -> None:
    region = crop_region((400, 300), 0.8)
    assert region == (40, 30, 360, 270)
    box = hottest_box(one_hot(4, 4, 1, 2), 4, 4, (400, 300), crop=0.8)
    assert box == cell_box(region, 4, 4, 1, 2) == (200, 90, 280, 150)


def test_non_square_image_and_grid() -> None:
    # 3 rows x 5 columns on a 500 x 240 image: cells are 100 x 80.
    box = hottest_box(one_hot(3, 5, 1, 3), 3, 5, (500, 240))
    assert box == (300, 80, 400, 160)
    tall = hottest_box(one_hot(4, 3, 3, 0), 4, 3, (240, 1000))
    assert tall == (0, 750, 80, 1000)


def test_an_image_smaller_than_the_working_grid_is_exact() -> None:
    box = hottest_box(one_hot(4, 4, 2, 1), 4, 4, (60, 40))
    assert box == (15, 20, 30, 30)


def test_only_the_maximums_region_is_boxed() -> None:
    grid = one_hot(4, 4, 0, 0, 1.0)
    grid[3 * 4 + 3] = 0.6  # a second, separate hot spot below the maximum
    assert hottest_box(grid, 4, 4, (400, 400)) == (0, 0, 100, 100)


def test_a_diffuse_map_boxes_its_hottest_tenth_not_everything() -> None:
    # Everything is above half the peak, yet the box keeps to the hottest 10% of the region.
    grid = [0.6, 0.7, 0.6, 0.7, 0.8, 0.7, 0.6, 0.7, 1.0]
    left, top, right, bottom = hottest_box(grid, 3, 3, (300, 300))
    assert (right, bottom) == (300, 300) and 0 < (right - left) * (bottom - top) <= 0.15 * 300**2


def test_adjacent_hot_cells_join_into_one_box() -> None:
    grid = one_hot(4, 4, 1, 1)
    grid[1 * 4 + 2] = 1.0
    assert hottest_box(grid, 4, 4, (400, 400)) == (100, 100, 300, 200)


def test_a_uniform_grid_boxes_the_whole_crop_region() -> None:
    assert hottest_box([0.3] * 9, 3, 3, (300, 200), crop=0.9) == crop_region((300, 200), 0.9)


@pytest.mark.parametrize("grid", [[0.0] * 16, [-1.0] * 16, [float("nan")] * 16])
def test_a_grid_with_nothing_hot_has_no_box(grid: list[float]) -> None:
    assert hottest_box(grid, 4, 4, (400, 300)) is None


def test_a_grid_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        hottest_box([1.0] * 15, 4, 4, (400, 300))


def test_a_decoded_grid_boxes_and_draws_as_its_values_do(tmp_path: Path) -> None:
    from training.explain.grid import decode_grid, encode_grid

    values = one_hot(4, 4, 1, 2, 0.75)
    grid = decode_grid(encode_grid(np.reshape(values, (4, 4))), 4, 4)  # (4, 4) float32
    assert hottest_box(grid, 4, 4, (400, 300)) == hottest_box(values, 4, 4, (400, 300))
    src = grey_png(tmp_path / "xray.png", (400, 300))
    render_overlay(src, grid, 4, 4, 0.9, tmp_path / "a.png")
    render_overlay(src, values, 4, 4, 0.9, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def full_resolution_box(grid, height, width, size, crop):
    """The definition applied literally, pixel by pixel over the whole crop region."""
    left, top, right, bottom = crop_region(size, crop)
    values = np.asarray(grid, dtype=np.float32).reshape(height, width)
    small = Image.frombytes("F", (width, height), (values / values.max()).tobytes())
    heat = np.asarray(small.resize((right - left, bottom - top), Image.Resampling.BILINEAR))
    seed = np.unravel_index(int(np.argmax(heat)), heat.shape)
    mask = heat >= max(0.5 * heat[seed], np.quantile(heat, 0.9))
    seen, queue, ys, xs = {seed}, deque([seed]), [], []
    while queue:
        y, x = queue.popleft()
        ys.append(y)
        xs.append(x)
        for n in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            inside = 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1]
            if inside and n not in seen and mask[n]:
                seen.add(n)
                queue.append(n)
    return left + min(xs), top + min(ys), left + max(xs) + 1, top + max(ys) + 1


@pytest.mark.parametrize("seed", range(4))
def test_the_working_grid_box_is_within_a_working_pixel_of_full_resolution(seed: int) -> None:
    rng = random.Random(seed)
    height, width = rng.randint(2, 7), rng.randint(2, 7)
    size, crop = (rng.randint(200, 420), rng.randint(200, 420)), rng.choice([1.0, 0.85])
    grid = [rng.random() for _ in range(height * width)]
    got = hottest_box(grid, height, width, size, crop)
    want = full_resolution_box(grid, height, width, size, crop)
    left, top, right, bottom = crop_region(size, crop)
    per_cell = overlay.WORK_SIDE // max(height, width)
    tol_x = (right - left) / (width * per_cell) + 1
    tol_y = (bottom - top) / (height * per_cell) + 1
    assert got is not None
    for g, w, tol in zip(got, want, (tol_x, tol_y, tol_x, tol_y), strict=True):
        assert abs(g - w) <= tol, (got, want)


# render_overlay


def _hot_cell_overlay(tmp_path: Path, crop: float) -> tuple[tuple, Image.Image]:
    """(the box, the overlay) of a 4x4 grid hot at row 1, column 2 over a grey 400x300 X-ray."""
    src = grey_png(tmp_path / "xray.png", (400, 300))
    out = tmp_path / "overlay.png"
    box = render_overlay(src, one_hot(4, 4, 1, 2), 4, 4, crop, out)
    with Image.open(out) as img:
        img.load()
    return box, img


def test_overlay_keeps_the_size_tints_the_hot_cell_and_leaves_cold_pixels(tmp_path: Path) -> None:
    box, img = _hot_cell_overlay(tmp_path, 1.0)
    assert box == (200, 75, 300, 150)
    assert img.format == "PNG"
    assert img.size == (400, 300)
    pixels = img.convert("RGB").load()
    assert pixels[250, 112] != (90, 90, 90)  # the hot cell's centre: tinted
    assert pixels[200, 112] == BOX_COLOUR  # the box outline's left edge
    assert pixels[299, 112] == BOX_COLOUR  # ... and its right edge, inside the box
    # Heat is exactly zero more than a cell away from the hot cell: the X-ray shows unchanged.
    for x, y in [(10, 10), (390, 290), (50, 250), (120, 10)]:
        assert pixels[x, y] == (90, 90, 90)


def test_overlay_blends_with_opacity_alpha_times_heat(tmp_path: Path) -> None:
    src = grey_png(tmp_path / "xray.png", (400, 400), level=0)
    out = tmp_path / "overlay.png"
    grid = [1.0] * 16  # heat 1 everywhere: every pixel is alpha x the hottest colour
    render_overlay(src, grid, 4, 4, 1.0, out, alpha=0.5)
    hottest = colormap()[255].astype(float)
    with Image.open(out) as img:
        assert img.getpixel((200, 200)) == tuple(int(round(c * 0.5)) for c in hottest)


def test_overlay_outlines_the_crop_region_faintly(tmp_path: Path) -> None:
    box, img = _hot_cell_overlay(tmp_path, 0.8)
    assert box == (200, 90, 280, 150)
    pixels = img.load()
    assert pixels[40, 150] not in ((90, 90, 90), BOX_COLOUR)  # crop region's left border
    assert pixels[20, 150] == (90, 90, 90)  # outside what the model saw
    assert pixels[200, 120] == BOX_COLOUR


def test_overlay_of_a_grid_with_nothing_hot_is_the_xray(tmp_path: Path) -> None:
    src = tmp_path / "xray.jpg"
    Image.linear_gradient("L").resize((320, 200)).save(src)
    out = tmp_path / "overlay.png"
    assert render_overlay(src, [0.0] * 16, 4, 4, 1.0, out) is None
    with Image.open(src) as original, Image.open(out) as overlay:
        assert overlay.tobytes() == original.convert("RGB").tobytes()


def test_overlay_of_an_rgb_original(tmp_path: Path) -> None:
    src = tmp_path / "xray.jpg"
    Image.new("RGB", (240, 180), (60, 60, 60)).save(src)
    out = tmp_path / "overlay.png"
    box = render_overlay(src, one_hot(4, 4, 0, 3), 4, 4, 1.0, out)
    assert box == cell_box((0, 0, 240, 180), 4, 4, 0, 3)
    with Image.open(out) as img:
        assert img.size == (240, 180) and img.mode == "RGB"


def test_overlay_of_a_16_bit_png(tmp_path: Path) -> None:
    src = tmp_path / "xray16.png"
    # A 12-bit detector's values in a 16-bit PNG: 4095 is full white after scaling to 8 bits.
    Image.fromarray(np.full((120, 160), 4095, dtype=np.uint16)).save(src)
    with Image.open(src) as img:
        assert img.mode.startswith("I")
    out = tmp_path / "overlay.png"
    assert render_overlay(src, one_hot(4, 4, 3, 3), 4, 4, 1.0, out) == (120, 90, 160, 120)
    with Image.open(out) as img:
        assert img.size == (160, 120)
        assert img.getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("content", [b"not an image at all", None])
def test_an_unreadable_image_is_a_one_line_user_error(tmp_path: Path, content) -> None:
    src = tmp_path / "broken.png"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(HeatmapImageError) as caught:
        render_overlay(src, [1.0] * 4, 2, 2, 1.0, tmp_path / "out.png")
    assert type(caught.value).user_error is True
    assert "\n" not in str(caught.value) and "broken.png" in str(caught.value)
    assert not (tmp_path / "out.png").exists()


def test_an_unwritable_destination_is_a_one_line_user_error(tmp_path: Path) -> None:
    src = grey_png(tmp_path / "xray.png", (40, 40))
    with pytest.raises(HeatmapImageError) as caught:
        render_overlay(src, [1.0] * 4, 2, 2, 1.0, tmp_path / "missing" / "out.png")
    assert "\n" not in str(caught.value)


def test_colormap_runs_dark_to_bright() -> None:
    lut = colormap()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    brightness = lut.astype(int).sum(axis=1)
    assert brightness[0] < 20 and brightness[255] > 600
    assert all(np.diff(brightness) >= 0)


def test_a_dicom_is_drawn_as_displayed_and_a_broken_one_is_one_line(tmp_path) -> None:
    from training.data.dicom_write import DicomSpec, write_dicom

    gray = np.random.default_rng(0).integers(0, 256, (40, 60), dtype=np.uint8)
    write_dicom(tmp_path / "x.dcm", gray, DicomSpec(bits=16, monochrome1=True))
    drawn = np.array(overlay.open_rgb(tmp_path / "x.dcm"))
    assert drawn.shape == (40, 60, 3) and (drawn[..., 0] == gray).all()
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(overlay.HeatmapImageError, match="bad.dcm"):
        overlay.open_rgb(tmp_path / "bad.dcm")
