"""The stored grid: float16, row-major, little-endian bytes, read back as numpy."""

import struct

import numpy as np
import pytest
import torch

from training.explain.grid import decode_grid, encode_grid


def torch_encoded(map2d: torch.Tensor) -> bytes:
    """The bytes scoring stored before the codec went numpy-only: the database's rows."""
    values = map2d.detach().to("cpu", torch.float16).contiguous().numpy()
    return values.astype("<f2", copy=False).tobytes()


def test_grid_bytes_round_trip_exactly_as_little_endian_float16() -> None:
    grid = torch.rand(5, 7).half().float()
    data = encode_grid(grid)
    assert len(data) == 2 * 5 * 7
    assert torch.equal(torch.from_numpy(decode_grid(data, 5, 7)), grid)
    assert encode_grid(torch.tensor([[1.0, 0.0]])) == b"\x00\x3c\x00\x00"
    with pytest.raises(ValueError, match="do not hold"):
        decode_grid(data, 5, 6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_a_tensor_encodes_to_the_bytes_torch_gave(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    grid = (torch.rand(16, 16, generator=gen, dtype=torch.float64) * 1.5 - 0.25).to(dtype)
    grid[0, :4] = torch.tensor([float("nan"), float("inf"), 1e-8, 70000.0]).to(dtype)
    assert encode_grid(grid) == torch_encoded(grid)
    assert encode_grid(grid.T) == torch_encoded(grid.T)  # a transposed view: still row-major
    assert encode_grid(grid.requires_grad_()) == torch_encoded(grid)


def test_a_numpy_array_encodes_like_the_same_tensor() -> None:
    grid = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    assert encode_grid(grid) == encode_grid(torch.from_numpy(grid))
    assert encode_grid(grid.tolist()) == encode_grid(grid)


def test_only_a_2d_map_encodes() -> None:
    with pytest.raises(ValueError, match=r"\(h, w\) map, got shape \(1, 2, 2\)"):
        encode_grid(torch.zeros(1, 2, 2))


def test_decode_grid_round_trips_little_endian_float16() -> None:
    values = [0.0, 0.25, 0.5, 1.0, -2.0, 0.125]
    data = struct.pack("<" + "e" * len(values), *values)
    grid = decode_grid(data, 2, 3)
    assert grid.dtype == np.float32 and grid.shape == (2, 3)
    assert grid.ravel().tolist() == values


def test_decode_grid_rejects_a_wrong_length_in_one_line() -> None:
    with pytest.raises(ValueError) as caught:
        decode_grid(b"\x00" * 10, 2, 3)
    assert "\n" not in str(caught.value)
    assert "12 bytes" in str(caught.value)


def test_decode_grid_rejects_an_empty_size() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        decode_grid(b"", 0, 3)


def test_decode_grid_reads_little_endian_whatever_the_host() -> None:
    # 1.0 in float16 is 0x3C00: little-endian bytes 00 3C; -2.0 is 0xC000.
    assert decode_grid(b"\x00\x3c\x00\xc0", 1, 2).ravel().tolist() == [1.0, -2.0]
