"""A shadow scorer shares the chunk's decode: two scoring calls with one memo decode once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import make_xray
from training.scoring import files


def test_a_shared_memo_decodes_each_file_once_and_answers_the_same(
    tiny_checkpoint: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.models.checkpoint import from_bytes

    bundle = from_bytes(tiny_checkpoint["model"]["weights"])
    paths = [str(make_xray(tmp_path / f"{i}.png", i % 2 == 0, seed=i)) for i in range(5)]
    calls = []
    real = files.decode_many
    monkeypatch.setattr(files, "decode_many", lambda *a, **k: calls.append(1) or real(*a, **k))
    alone = files.score_files_multi([bundle], paths)
    memo: dict = {}
    first = files.score_files_multi([bundle], paths, memo=memo)
    second = files.score_files_multi([bundle], paths, memo=memo)
    assert len(calls) == 2  # alone, then the first memo call; the second replays
    assert torch.equal(first.probs, alone.probs) and torch.equal(second.probs, alone.probs)
